// Loading a Llama-family Hugging Face folder: config.json plus model.safetensors or shards with
// model.safetensors.index.json. Every tensor's name and shape is checked against the config before anything is
// uploaded; a tensor the architecture does not have is refused by name (transformers' `rotary_emb.inv_freq`
// buffers excepted); `lm_head.weight` absent means tied to the embeddings. Weights go to the device in the file's
// dtype (or `--dtype`'s); RMSNorm weights and biases, a few thousand elements, are kept in float32.
// QLoRA: the seven linears of each layer may be stored 4-bit (a bitsandbytes folder: validated as a whole, then
// uploaded packed) or quantized to NF4 as they load (`options.quantization`); embeddings, norms and lm_head never.
import Foundation
import LoRAFormats
import LoRAModels
import LoRANN
import LoRAQuantization
import LoRARuntime

/// A Llama-family checkpoint being turned into device tensors.
struct LlamaWeights {
    let config: LlamaConfig
    let backend: any Backend
    /// Where the tensors come from: a checkpoint on disk, or random values.
    private let source: Source
    private let options: ModelLoadOptions
    /// The linears the checkpoint stores 4-bit.
    private var quantizedInFile: Set<String> = []
    /// How the 4-bit linears are quantized (the load options', or the folder's); nil when none are.
    private(set) var quantization: NF4Options?

    private enum Source {
        case checkpoint(SafeTensorsCheckpoint)
        /// Random values, each tensor made when it is asked for (a whole float32 model never sits in host memory).
        case random(seed: UInt64)
    }

    /// Every tensor name and shape a model of `config` has (`lm_head.weight` included; it may be absent: tied).
    static func expectedShapes(_ c: LlamaConfig) -> [String: [Int]] {
        let (hidden, d, inner) = (c.hiddenSize, c.headDim, c.intermediateSize)
        let (qWidth, kvWidth) = (c.heads * d, c.kvHeads * d)
        var shapes: [String: [Int]] = ["model.embed_tokens.weight": [c.vocabSize, hidden], "model.norm.weight": [hidden],
                                       "lm_head.weight": [c.vocabSize, hidden]]
        for i in 0..<c.layers {
            let p = "model.layers.\(i)."
            shapes[p + "input_layernorm.weight"] = [hidden]
            shapes[p + "post_attention_layernorm.weight"] = [hidden]
            for (name, out, input) in [("self_attn.q_proj", qWidth, hidden), ("self_attn.k_proj", kvWidth, hidden),
                                       ("self_attn.v_proj", kvWidth, hidden), ("self_attn.o_proj", hidden, qWidth),
                                       ("mlp.gate_proj", inner, hidden), ("mlp.up_proj", inner, hidden), ("mlp.down_proj", hidden, inner)] {
                shapes[p + name + ".weight"] = [out, input]
                if hasBias(name, c) { shapes[p + name + ".bias"] = [out] }
            }
            if c.qkNorm {
                shapes[p + "self_attn.q_norm.weight"] = [d]
                shapes[p + "self_attn.k_norm.weight"] = [d]
            }
        }
        return shapes
    }

    /// The linear modules of a model of `c` (the ones bitsandbytes quantizes).
    static func linearModules(_ c: LlamaConfig) -> [String] {
        (0..<c.layers).flatMap { i in
            ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj",
             "mlp.down_proj"].map { "model.layers.\(i).\($0)" }
        }
    }

    /// Whether `module` (`self_attn.q_proj`, `mlp.down_proj`, ...) has a bias in `c`'s family.
    static func hasBias(_ module: String, _ c: LlamaConfig) -> Bool {
        switch module {
        case "self_attn.o_proj": c.outputBias
        case _ where module.hasPrefix("self_attn."): c.qkvBias
        default: c.mlpBias
        }
    }

    /// Opens `folder` and checks every tensor against its config.json.
    static func load(folder: String, backend: any Backend, options: ModelLoadOptions) throws -> LlamaWeights {
        let configPath = folder + "/config.json"
        let config = try LlamaConfig(contentsOf: configPath)
        let checkpoint = try SafeTensorsCheckpoint(folder: folder)
        let expected = expectedShapes(config)
        let (quantized, found) = try checkpoint.checkQuantizedModules(linears: Set(linearModules(config)),
                                                                      config: config.rawJSON ?? [:], configPath: configPath)
        for name in checkpoint.names {
            if name.hasSuffix(".rotary_emb.inv_freq") { continue }  // a buffer older transformers saved; recomputed here
            // A 4-bit weight's tensors were checked against its quant state, and its shape is checked as it loads.
            if let module = BitsAndBytes4Bit.module(ofStatistic: name) ?? (name.hasSuffix(".weight") ? String(name.dropLast(7)) : nil),
               quantized.contains(module) { continue }
            let entry = try checkpoint.entry(name)
            guard let shape = expected[name] else {
                throw FormatError.unsupported(path: checkpoint.path(of: name), reason: "tensor '\(name)' is not part of a \(config.family.rawValue) model of this config.json")
            }
            guard entry.shape == shape else {
                throw FormatError.invalid(path: checkpoint.path(of: name), reason: "\(name) is \(entry.shape), but config.json implies \(shape)")
            }
            guard entry.dtype.isFloatingPoint else {  // F64 is read as float32, as for GPT-2
                throw FormatError.unsupported(path: checkpoint.path(of: name), reason: "\(name) is \(entry.dtype.rawValue); weights must be F32, BF16, F16 or F64")
            }
        }
        if let missing = expected.keys.sorted().first(where: { $0 != "lm_head.weight" && !checkpoint.contains($0) }) {
            throw FormatError.invalid(path: checkpoint.path(of: missing), reason: "missing tensor '\(missing)'")
        }
        var weights = LlamaWeights(config: config, backend: backend, source: .checkpoint(checkpoint), options: options)
        weights.quantizedInFile = quantized
        weights.quantization = options.quantization ?? found
        return weights
    }

    /// Random weights as transformers initializes the family: normal(0, initializer_range) for linear weights and
    /// embeddings, zero biases, RMSNorm weights at 1. Tied models get no `lm_head.weight`. Each tensor comes from
    /// its own generator (seeded by `seed` and its name), made when the model asks for it.
    static func random(_ config: LlamaConfig, seed: UInt64, backend: any Backend, options: ModelLoadOptions = ModelLoadOptions()) -> LlamaWeights {
        var weights = LlamaWeights(config: config, backend: backend, source: .random(seed: seed), options: options)
        weights.quantization = options.quantization
        return weights
    }

    /// The values of random tensor `name`.
    private func randomValues(_ name: String, seed: UInt64) -> [Float] {
        let count = Self.expectedShapes(config)[name]!.reduce(1, *)
        if name.hasSuffix(".bias") { return Array(repeating: 0, count: count) }
        if name.hasSuffix("norm.weight") { return Array(repeating: 1, count: count) }
        var generator = SeededGenerator(seed: seed, name: name)
        return generator.normal(count: count, standardDeviation: Float(config.rawJSON?["initializer_range"]?.doubleValue ?? 0.02))
    }

    func hasTensor(_ name: String) -> Bool {
        switch source {
        case .checkpoint(let checkpoint): checkpoint.contains(name)
        case .random: Self.expectedShapes(config)[name] != nil && !(name == "lm_head.weight" && config.tieWordEmbeddings)
        }
    }

    /// A weight on the device: in the file's dtype, or the load options' (`keep` float32 for random weights).
    func tensor(_ name: String) throws -> Tensor { try upload(name, dtype: options.dtype) }

    /// A small weight (norm, bias) on the device in float32.
    func float32(_ name: String) throws -> Tensor { try upload(name, dtype: .float32) }

    private func upload(_ name: String, dtype: DType?) throws -> Tensor {
        switch source {
        case .checkpoint(let checkpoint): return try checkpoint.upload(name, to: backend, dtype: dtype)
        case .random(let seed):
            let tensor = try backend.upload(randomValues(name, seed: seed), shape: Self.expectedShapes(config)[name]!)
            return dtype == nil || dtype == .float32 ? tensor : try backend.converted(tensor, to: dtype!)
        }
    }

    /// An RMSNorm's weight (`prefix.weight`), float32.
    func norm(_ prefix: String) throws -> Tensor { try float32(prefix + ".weight") }

    /// A linear module `prefix` (`[out, in]` weight, float32 bias where the config has one): 4-bit as the file
    /// stores it or as the load quantizes it, else dense.
    func linear(_ prefix: String) throws -> LinearModule {
        let bias = hasTensor(prefix + ".bias") ? try float32(prefix + ".bias") : nil
        let name = prefix + ".weight"
        let shape = Self.expectedShapes(config)[name]!
        switch source {
        case .checkpoint(let checkpoint) where quantizedInFile.contains(prefix):
            return LinearModule(name: prefix, base: try checkpoint.nf4Linear(module: prefix, out: shape[0], in: shape[1],
                                                                             bias: bias, backend: backend))
        case _ where options.quantization != nil:
            let (values, dtype): ([Float], DType) = switch source {
            case .checkpoint(let checkpoint): (try checkpoint.floats(name), DType(safeTensors: try checkpoint.entry(name).dtype) ?? .float32)
            case .random(let seed): (randomValues(name, seed: seed), .float32)
            }
            return LinearModule(name: prefix, base: try options.quantization!.linear(values, out: shape[0], in: shape[1], bias: bias,
                                                                                    dtype: dtype, name: name, backend: backend))
        default:
            return try LinearModule(name: prefix, weight: try tensor(name), bias: bias, layout: .outIn)
        }
    }
}
