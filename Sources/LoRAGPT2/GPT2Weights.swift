// Loading a Hugging Face GPT-2 folder: config.json + model.safetensors. Tensor names may carry the
// `transformer.` prefix (GPT2LMHeadModel) or not (GPT2Model); the causal-mask buffers (`attn.bias`,
// `attn.masked_bias`) are skipped; `lm_head.weight` is tied to `wte` when absent. Every shape is checked
// against the config before anything is uploaded; any other tensor is refused by name.
import Foundation
import LoRAFormats
import LoRARuntime

/// GPT-2's tensors on the host, by their names without the `transformer.` prefix.
struct GPT2Checkpoint {
    let config: GPT2Config
    var tensors: [String: (shape: [Int], values: [Float])]

    /// The tensor names and shapes a model of `config` has (lm_head excluded: tied).
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

    /// Reads `folder/config.json` and `folder/model.safetensors`.
    static func load(folder: String) throws -> GPT2Checkpoint {
        let config = try GPT2Config(contentsOf: folder + "/config.json")
        let path = folder + "/model.safetensors"
        let file = try SafeTensorsFile(path: path)
        let expected = expectedShapes(config)
        var tensors: [String: (shape: [Int], values: [Float])] = [:]
        for name in file.names {
            let key = name.hasPrefix("transformer.") ? String(name.dropFirst("transformer.".count)) : name
            if key.hasSuffix(".attn.bias") || key.hasSuffix(".attn.masked_bias") { continue }
            let entry = try file.entry(name)
            if key == "lm_head.weight" {
                guard entry.shape == [config.vocabSize, config.width] else {
                    throw FormatError.invalid(path: path, reason: "\(name) is \(entry.shape), expected [\(config.vocabSize), \(config.width)]")
                }
            } else {
                guard let shape = expected[key] else {
                    throw FormatError.unsupported(path: path, reason: "tensor '\(name)' is not part of a GPT-2 LM of this config")
                }
                guard entry.shape == shape else {
                    throw FormatError.invalid(path: path, reason: "\(name) is \(entry.shape), but config.json implies \(shape)")
                }
            }
            guard tensors[key] == nil else { throw FormatError.invalid(path: path, reason: "'\(key)' appears twice (with and without the prefix)") }
            tensors[key] = (entry.shape, try file.floats(name))
        }
        if let missing = expected.keys.sorted().first(where: { tensors[$0] == nil }) {
            throw FormatError.invalid(path: path, reason: "missing tensor '\(missing)' (or 'transformer.\(missing)')")
        }
        return GPT2Checkpoint(config: config, tensors: tensors)
    }

    /// Random weights for `config`, as transformers initializes GPT-2: normal(0, 0.02) matrices and embeddings,
    /// the residual projections (`c_proj`) scaled by 1/√(2·layers), zero biases, layer norms at 1 and 0.
    static func random(_ config: GPT2Config, seed: UInt64) -> GPT2Checkpoint {
        var generator = SeededGenerator(seed: seed)
        var tensors: [String: (shape: [Int], values: [Float])] = [:]
        for (name, shape) in expectedShapes(config).sorted(by: { $0.key < $1.key }) {
            let count = shape.reduce(1, *)
            let values: [Float]
            if name.hasSuffix(".bias") { values = Array(repeating: 0, count: count) }
            else if name.contains("ln_") { values = Array(repeating: 1, count: count) }
            else {
                let std: Float = name.hasSuffix("c_proj.weight") ? 0.02 / Float(2 * config.layers).squareRoot() : 0.02
                values = generator.normal(count: count, standardDeviation: std)
            }
            tensors[name] = (shape, values)
        }
        return GPT2Checkpoint(config: config, tensors: tensors)
    }

    /// Writes a Hugging Face folder (config.json, model.safetensors with the `transformer.` prefix), atomically per file.
    static func write(config: GPT2Config, tensors: [(name: String, shape: [Int], values: [Float])], to folder: String) throws {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        // lm_head (untied models only) has no prefix, as transformers writes it.
        try SafeTensorsWriter.write(tensors.map { .float32(($0.name == "lm_head.weight" ? "" : "transformer.") + $0.name,
                                                           shape: $0.shape, values: $0.values) },
                                    metadata: ["format": "pt"], to: folder + "/model.safetensors")
        try AtomicFile.write(Data((config.json.serialized() + "\n").utf8), to: folder + "/config.json")
    }
}
