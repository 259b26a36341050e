// Loading a Hugging Face GPT-2 folder: config.json plus model.safetensors or shards with
// model.safetensors.index.json. Tensor names may carry the `transformer.` prefix (GPT2LMHeadModel) or not
// (GPT2Model); the causal-mask buffers (`attn.bias`, `attn.masked_bias`) are skipped; `lm_head.weight` is tied to
// `wte` when absent. Every name, shape and dtype is checked against the config before anything is uploaded; any
// other tensor is refused by name. Tensors go to the device one at a time straight from the mapped files: the
// matrices (wte, wpe, the four projections of each block, lm_head) in the file's dtype or the one the load asks
// for; layer norm parameters and biases, a few thousand elements feeding float32 ops, always in float32.
// QLoRA: the four projections of each block may be stored 4-bit (a bitsandbytes folder, where transformers keeps
// them `[out, in]`, the transpose of Conv1D's) or quantized to NF4 as they load (the Conv1D weight transposed
// first, as transformers does); embeddings, norms and lm_head never.
import Foundation
import LoRAFormats
import LoRAModels
import LoRANN
import LoRAQuantization
import LoRARuntime

/// A GPT-2 checkpoint being turned into device tensors, addressed by names without the `transformer.` prefix.
struct GPT2Weights {
    let config: GPT2Config
    let backend: any Backend
    private let source: Source
    private let options: ModelLoadOptions
    /// The projections (unprefixed, `h.0.attn.c_attn`) the checkpoint stores 4-bit, with their name in the file.
    private var quantizedInFile: [String: String] = [:]
    /// How the 4-bit projections are quantized (the load options', or the folder's); nil when none are.
    private(set) var quantization: NF4Options?

    private enum Source {
        /// A checkpoint on disk, with the name each tensor has in it (prefixed or not) by its unprefixed name.
        case checkpoint(SafeTensorsCheckpoint, names: [String: String])
        /// Random values (training from scratch), each tensor made when it is asked for.
        case random(seed: UInt64)
    }

    /// The tensor names and shapes a model of `config` has (lm_head excluded: tied unless the file has one).
    static func expectedShapes(_ c: GPT2Config) -> [String: [Int]] {
        var shapes: [String: [Int]] = ["wte.weight": [c.vocabSize, c.width], "wpe.weight": [c.positions, c.width],
                                       "ln_f.weight": [c.width], "ln_f.bias": [c.width]]
        for i in 0..<c.layers {
            let p = "h.\(i)."
            for ln in ["ln_1", "ln_2"] { shapes[p + ln + ".weight"] = [c.width]; shapes[p + ln + ".bias"] = [c.width] }
            shapes[p + "attn.c_attn.weight"] = [c.width, 3 * c.width]
            shapes[p + "attn.c_attn.bias"] = [3 * c.width]
            shapes[p + "attn.c_proj.weight"] = [c.width, c.width]
            shapes[p + "attn.c_proj.bias"] = [c.width]
            shapes[p + "mlp.c_fc.weight"] = [c.width, c.inner]
            shapes[p + "mlp.c_fc.bias"] = [c.inner]
            shapes[p + "mlp.c_proj.weight"] = [c.inner, c.width]
            shapes[p + "mlp.c_proj.bias"] = [c.width]
        }
        return shapes
    }

    /// The four projections of each block, unprefixed (`h.0.attn.c_attn`).
    static func projections(_ c: GPT2Config) -> [String] {
        (0..<c.layers).flatMap { i in ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"].map { "h.\(i).\($0)" } }
    }

    /// Opens `folder` (config.json and the single file or shards) and checks every tensor; reads no tensor data
    /// (but 4-bit weights' small quant states).
    static func load(folder: String, backend: any Backend, options: ModelLoadOptions) throws -> GPT2Weights {
        let configPath = folder + "/config.json"
        let raw = try JSONValue.readObject(path: configPath)
        let config = try GPT2Config(json: raw, path: configPath)
        let checkpoint = try SafeTensorsCheckpoint(folder: folder)
        var expected = expectedShapes(config)
        expected["lm_head.weight"] = [config.vocabSize, config.width]
        let projections = projections(config)
        let (quantized, found) = try checkpoint.checkQuantizedModules(linears: Set(projections + projections.map { "transformer." + $0 }),
                                                                      config: raw, configPath: configPath)
        var names: [String: String] = [:]
        for name in checkpoint.names {
            let path = checkpoint.path(of: name)
            let key = name.hasPrefix("transformer.") ? String(name.dropFirst("transformer.".count)) : name
            if key.hasSuffix(".attn.bias") || key.hasSuffix(".attn.masked_bias") { continue }
            // A 4-bit weight's tensors were checked against its quant state; its shape is checked as it loads.
            if BitsAndBytes4Bit.module(ofStatistic: name).map(quantized.contains) == true { continue }
            if name.hasSuffix(".weight"), quantized.contains(String(name.dropLast(".weight".count))) {
                guard names[key] == nil else { throw FormatError.invalid(path: path, reason: "'\(key)' appears twice (with and without the prefix)") }
                names[key] = name
                continue
            }
            let entry = try checkpoint.entry(name)
            guard let shape = expected[key] else {
                throw FormatError.unsupported(path: path, reason: "tensor '\(name)' is not part of a GPT-2 LM of this config")
            }
            guard entry.shape == shape else {
                throw FormatError.invalid(path: path, reason: "\(name) is \(entry.shape), but config.json implies \(shape)")
            }
            // F64 is read as float32 (as this loader always did); integer weights would be a quantized or foreign format.
            guard entry.dtype.isFloatingPoint else {
                throw FormatError.unsupported(path: path, reason: "\(name) is \(entry.dtype.rawValue); weights must be F32, BF16, F16 or F64")
            }
            guard names[key] == nil else { throw FormatError.invalid(path: path, reason: "'\(key)' appears twice (with and without the prefix)") }
            names[key] = name
        }
        if let missing = expectedShapes(config).keys.sorted().first(where: { names[$0] == nil }) {
            throw FormatError.invalid(path: checkpoint.path(of: "transformer." + missing),
                                      reason: "missing tensor '\(missing)' (or 'transformer.\(missing)')")
        }
        var weights = GPT2Weights(config: config, backend: backend, source: .checkpoint(checkpoint, names: names), options: options)
        for module in quantized {
            weights.quantizedInFile[module.hasPrefix("transformer.") ? String(module.dropFirst("transformer.".count)) : module] = module
        }
        weights.quantization = options.quantization ?? found
        return weights
    }

    /// Random weights for `config`, as transformers initializes GPT-2: normal(0, 0.02) matrices and embeddings,
    /// the residual projections (`c_proj`) scaled by 1/√(2·layers), zero biases, layer norms at 1 and 0. Float32
    /// unless `options` say otherwise; each tensor from its own generator (`seed` and its name), made when asked for.
    static func random(_ config: GPT2Config, seed: UInt64, backend: any Backend, options: ModelLoadOptions = ModelLoadOptions()) -> GPT2Weights {
        var weights = GPT2Weights(config: config, backend: backend, source: .random(seed: seed), options: options)
        weights.quantization = options.quantization
        return weights
    }

    /// The values of random tensor `key`.
    private func randomValues(_ key: String, seed: UInt64) -> [Float] {
        let count = Self.expectedShapes(config)[key]!.reduce(1, *)
        if key.hasSuffix(".bias") { return Array(repeating: 0, count: count) }
        if key.contains("ln_") { return Array(repeating: 1, count: count) }
        let std: Float = key.hasSuffix("c_proj.weight") ? 0.02 / Float(2 * config.layers).squareRoot() : 0.02
        var generator = SeededGenerator(seed: seed, name: key)
        return generator.normal(count: count, standardDeviation: std)
    }

    /// Whether the checkpoint has tensor `key` (unprefixed name).
    func hasTensor(_ key: String) -> Bool {
        switch source {
        case .checkpoint(_, let names): names[key] != nil
        case .random: Self.expectedShapes(config)[key] != nil
        }
    }

    /// A matrix on the device, in the file's dtype or the load options'.
    func tensor(_ key: String) throws -> Tensor { try upload(key, dtype: options.dtype) }

    /// A layer norm parameter or bias on the device in float32 (the ops consuming them compute in float32).
    func float32(_ key: String) throws -> Tensor { try upload(key, dtype: .float32) }

    private func upload(_ key: String, dtype: DType?) throws -> Tensor {
        switch source {
        case .checkpoint(let checkpoint, let names): return try checkpoint.upload(names[key]!, to: backend, dtype: dtype)
        case .random(let seed):
            let tensor = try backend.upload(randomValues(key, seed: seed), shape: Self.expectedShapes(config)[key]!)
            return dtype == nil || dtype == .float32 ? tensor : try backend.converted(tensor, to: dtype!)
        }
    }

    /// Projection `key` (`h.0.attn.c_attn`) as module `name`: 4-bit as the file stores it or as the load quantizes
    /// it (`[out, in]`), else Conv1D's dense `[in, out]`; its bias in float32.
    func projection(_ key: String, name: String) throws -> LinearModule {
        let bias = try float32(key + ".bias")
        let shape = Self.expectedShapes(config)[key + ".weight"]!  // [in, out]
        switch source {
        case .checkpoint(let checkpoint, _) where quantizedInFile[key] != nil:
            return LinearModule(name: name, base: try checkpoint.nf4Linear(module: quantizedInFile[key]!, out: shape[1], in: shape[0],
                                                                           bias: bias, backend: backend), denseLayout: .inOut)
        case _ where options.quantization != nil:
            let (values, dtype): ([Float], DType) = switch source {
            case .checkpoint(let checkpoint, let names):
                (try checkpoint.floats(names[key + ".weight"]!), DType(safeTensors: try checkpoint.entry(names[key + ".weight"]!).dtype) ?? .float32)
            case .random(let seed): (randomValues(key + ".weight", seed: seed), .float32)
            }
            // Conv1D keeps [in, out]; bitsandbytes quantizes the Linear's [out, in].
            let (rows, columns) = (shape[0], shape[1])
            var transposed = [Float](repeating: 0, count: values.count)
            for r in 0..<rows { for c in 0..<columns { transposed[c * rows + r] = values[r * columns + c] } }
            return LinearModule(name: name, base: try options.quantization!.linear(transposed, out: columns, in: rows, bias: bias,
                                                                                  dtype: dtype, name: name + ".weight", backend: backend),
                                denseLayout: .inOut)
        default:
            return try LinearModule(name: name, weight: try tensor(key + ".weight"), bias: bias, layout: .inOut)
        }
    }
}
