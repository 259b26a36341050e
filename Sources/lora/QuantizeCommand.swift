// `lora quantize`: writes a model folder with its decoder's linear layers in bitsandbytes' 4-bit NF4 format (the
// tensors and quantization_config transformers + bitsandbytes load as is), byte for byte what
// `BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4")` makes; embeddings, norms and lm_head stay
// as they are. Quantizing is host work: no device is needed.
import ArgumentParser
import Foundation
import SwiftLoRA

struct QuantizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quantize", abstract: "Write a model folder quantized to 4-bit NF4 (bitsandbytes' format, for QLoRA).")

    @Option(help: "The Hugging Face model folder to quantize (float32, bfloat16 or float16 weights).")
    var model: String
    @Option(help: "The folder to write (config.json with quantization_config, model.safetensors or shards, the tokenizer files); written beside it first, then moved in place.")
    var out: String
    @Option(help: "Elements per quantization block: a power of two from 32 to 4096 (transformers uses 64).")
    var blocksize = 64
    @Flag(help: "Keep each block's absmax in float32 instead of quantizing it to 8 bits (bnb_4bit_use_double_quant false).")
    var noDoubleQuant = false
    @Option(help: "bnb_4bit_compute_dtype recorded in config.json: float32, bfloat16 or float16 (this tool computes in float32 either way).")
    var computeDtype = "float32"

    func validate() throws {
        try requireDistinct(out: out, model: model)
        guard NF4HostWeight.blocksizes.contains(blocksize) else {
            throw ValidationError("--blocksize \(blocksize) is not a power of two from 32 to 4096")
        }
        guard DType(rawValue: computeDtype)?.isFloatingPoint == true else {
            throw ValidationError("--compute-dtype takes float32, bfloat16 or float16, not '\(computeDtype)'")
        }
    }

    func run() throws {
        let options = NF4Options(blocksize: blocksize, doubleQuantization: !noDoubleQuant, computeDType: DType(rawValue: computeDtype)!)
        guard try SafeTensorsCheckpoint(folder: model).quantizedModules.isEmpty else {
            throw ValidationError("\(model) is already 4-bit (bitsandbytes); `lora merge` or a float checkpoint is the way back")
        }
        let lm = try loadModel(model, backend: CPUBackend.shared, options: ModelLoadOptions(quantization: options))
        var copied: [String] = []
        try writeFolder(out) { folder in
            try lm.save(folder: folder)
            copied = try copyTokenizerFiles(from: model, to: folder)
        }
        let bits = lm.quantizedBitsPerParameter ?? 0
        print(String(format: "quantized %d linear layers to NF4 (blocksize %d%@): %.3f bits per parameter; %@ (config.json, model.safetensors%@)",
                     lm.quantizedModules.count, blocksize, noDoubleQuant ? "" : ", double quantization", bits, out,
                     copied.isEmpty ? "" : ", " + copied.joined(separator: ", ")))
    }
}
