// `lora merge`: folds a PEFT adapter into its base model (W' = W + s·B·A) and writes a Hugging Face folder of the
// same architecture that transformers loads. The tokenizer files come along. A 4-bit (QLoRA) base is dequantized
// first and written in --dtype (default: its compute dtype): re-quantizing would round small deltas away, so it
// happens only with an explicit --quantize nf4, and then with a warning.
import ArgumentParser
import Foundation
import SwiftLoRA

struct MergeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge", abstract: "Fold a PEFT LoRA adapter into a model folder.")

    @Option(help: "The base Hugging Face model folder (float or bitsandbytes 4-bit).")
    var model: String
    @Option(help: "The PEFT LoRA adapter folder.")
    var adapter: String
    @Option(help: "The folder to write (config.json, model.safetensors or shards with an index, and the model's tokenizer files), in the base's dtype unless --dtype; written beside it first, then moved in place.")
    var out: String
    @OptionGroup var device: DeviceOptions
    @OptionGroup var load: LoadOptions

    func validate() throws { try requireDistinct(out: out, model: model) }

    func run() throws {
        let backend = try device.select()
        // The base loads as its file has it; --quantize applies to what is written.
        let lm = try loadModel(model, backend: backend, options: ModelLoadOptions(dtype: load.storage))
        if let quantization = lm.quantization, !lm.quantizedModules.isEmpty {
            let dtype = load.storage ?? quantization.computeDType
            print("the base is 4-bit: dequantizing \(lm.quantizedModules.count) linear layers to \(dtype) before merging")
            try lm.dequantizeBases(dtype: dtype)
        }
        try lm.loadAdapter(folder: adapter)
        try lm.mergeAdapters()
        var copied: [String] = []
        try writeFolder(out) { folder in
            if load.quantize != nil {
                FileHandle.standardError.write(Data(("warning: --quantize nf4 rounds the merged weights to 4 bits; "
                    + "deltas smaller than a quantization step are lost (merge without it to keep them)\n").utf8))
                let merged = folder + "/merged"
                try lm.save(folder: merged)
                try loadModel(merged, backend: CPUBackend.shared, options: load.options()).save(folder: folder)
                try FileManager.default.removeItem(atPath: merged)
            } else {
                try lm.save(folder: folder)
            }
            copied = try copyTokenizerFiles(from: model, to: folder)
        }
        print("merged \(lm.loraLayers.count) adapted modules into \(out) (config.json, model.safetensors"
            + (copied.isEmpty ? "" : ", " + copied.joined(separator: ", ")) + ")")
    }
}
