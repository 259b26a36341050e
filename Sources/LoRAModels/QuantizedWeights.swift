// QLoRA's frozen bases for every model family: linear layers read from a bitsandbytes 4-bit folder or quantized
// to NF4 as they load, written back in bitsandbytes' format, and dequantized when an adapter is merged.
// The families decide which of their modules are linear and where each weight's floats come from; what NF4 means
// (layout, statistics, files) lives here and in LoRAQuantization, once.
import Foundation
import LoRAFormats
import LoRANN
import LoRAQuantization
import LoRARuntime

/// How a load quantizes the frozen linears (`--quantize nf4`), as transformers' `BitsAndBytesConfig(load_in_4bit,
/// bnb_4bit_quant_type="nf4")` does: every linear of the decoder, never the embeddings, norms or output layer.
public struct NF4Options: Sendable, Equatable {
    /// Elements per block (bitsandbytes': 32...4096; transformers always uses 64).
    public var blocksize: Int
    /// `bnb_4bit_use_double_quant`: the blocks' absmax quantized to 8 bits in groups of 256.
    public var doubleQuantization: Bool
    /// `bnb_4bit_compute_dtype`, recorded in config.json (this runtime computes in float32 whatever it says).
    public var computeDType: DType

    public init(blocksize: Int = 64, doubleQuantization: Bool = true, computeDType: DType = .float32) {
        (self.blocksize, self.doubleQuantization, self.computeDType) = (blocksize, doubleQuantization, computeDType)
    }

    /// config.json's `quantization_config` for these settings.
    public var configJSON: JSONValue {
        BitsAndBytesQuantizationConfig(doubleQuantization: doubleQuantization, computeDType: computeDType).json
    }

    /// Quantizes a float weight `[out, in]` (row-major) into a 4-bit base on `backend`.
    /// - Parameter dtype: the weight's dtype before quantization (recorded as bitsandbytes' quant_state `dtype`,
    ///   which its dequantized elements round to).
    public func linear(_ values: [Float], out: Int, in inFeatures: Int, bias: Tensor?, dtype: DType, name: String,
                       backend: any Backend) throws -> NF4Linear {
        let host = try NF4HostWeight.quantize(values, rows: out, columns: inFeatures, blocksize: blocksize,
                                              doubleQuantization: doubleQuantization, dtype: dtype, name: name)
        return try NF4Linear(weight: host.upload(to: backend), bias: bias)
    }
}

extension SafeTensorsCheckpoint {
    /// The 4-bit base of linear `module` (bitsandbytes' tensors `module.weight`, `.weight.absmax`, ...), checked
    /// against the layer's `[out, in]`.
    public func nf4Linear(module: String, out: Int, in inFeatures: Int, bias: Tensor?, backend: any Backend) throws -> NF4Linear {
        let host = try readNF4(module: module)
        guard host.rows == out, host.columns == inFeatures else {
            throw FormatError.invalid(path: path(of: module + ".weight"),
                                      reason: "\(module): the 4-bit weight is [\(host.rows), \(host.columns)], but config.json implies [\(out), \(inFeatures)]")
        }
        return try NF4Linear(weight: host.upload(to: backend), bias: bias)
    }

    /// Checks that the 4-bit modules are exactly some of `linears` (the modules a family can hold in 4 bits) and
    /// that config.json says the folder is quantized; returns them and how they were quantized (the first one's
    /// blocksize and double quantization, config.json's compute dtype; nil when none is). A 4-bit tensor anywhere
    /// else is refused.
    public func checkQuantizedModules(linears: Set<String>, config: [String: JSONValue],
                                      configPath: String) throws -> (modules: Set<String>, options: NF4Options?) {
        let modules = try validateQuantizedModules()
        if let stray = modules.first(where: { !linears.contains($0) }) {
            throw FormatError.unsupported(path: path(of: stray + ".weight"),
                                          reason: "'\(stray)' is stored 4-bit, but only the decoder's linear layers can be quantized")
        }
        let declared = try BitsAndBytesQuantizationConfig(config: config, path: configPath)
        guard let first = modules.sorted().first else { return ([], nil) }
        guard let declared else {
            throw FormatError.invalid(path: configPath, reason: "the weights are 4-bit (bitsandbytes) but config.json has no quantization_config")
        }
        let weight = try readNF4(module: first)
        return (Set(modules), NF4Options(blocksize: weight.blocksize, doubleQuantization: weight.isDoubleQuantized,
                                         computeDType: declared.computeDType))
    }
}

extension LanguageModel {
    /// The modules whose base is 4-bit.
    public var quantizedModules: [LinearModule] { linearModules.filter { $0.nf4 != nil } }

    /// Replaces every 4-bit base by its dequantized copy stored as `dtype` (merging needs dense weights). Comes
    /// before any adapter is put on the model.
    public func dequantizeBases(dtype: DType) throws {
        for module in quantizedModules { try module.dequantizeBase(dtype: dtype) }
    }

    /// Bits per parameter of the 4-bit linears, statistics and code books included (nil when there are none).
    public var quantizedBitsPerParameter: Double? {
        let modules = quantizedModules
        guard !modules.isEmpty else { return nil }
        let bytes = modules.reduce(0) { $0 + $1.nf4!.weight.byteCount }
        let parameters = modules.reduce(0) { $0 + $1.nf4!.weight.count }
        return Double(8 * bytes) / Double(parameters)
    }

    /// bitsandbytes' tensors of every 4-bit module, for a checkpoint transformers loads (biases are in
    /// `namedWeights`).
    public func quantizedItems() throws -> [SafeTensorsWriter.Item] {
        try quantizedModules.flatMap { module in
            try NF4HostWeight(downloading: module.nf4!.weight).safeTensorsItems(module: module.name)
        }
    }
}
