// Reading a Llama-family config.json as transformers 5.24 does (LlamaConfig.swift holds the type): each family's
// defaults for absent keys, and a reader that checks every field's type and range and refuses what would change
// the math unsupported, naming the field.
import Foundation
import LoRAFormats

/// transformers 5.24's class defaults for keys absent from the file.
struct FamilyDefaults {
    var vocabSize: Int, intermediateSize: Int, maxPositions: Int
    /// Used when the key is absent; a `null` value always means "as many as heads".
    var kvHeads: Int?
    var bos: [Int], eos: [Int]

    init(_ family: LlamaArchitecture) {
        switch family {
        case .llama: (vocabSize, intermediateSize, maxPositions, kvHeads, bos, eos) = (32000, 11008, 2048, nil, [1], [2])
        case .mistral: (vocabSize, intermediateSize, maxPositions, kvHeads, bos, eos) = (32000, 14336, 131072, 8, [1], [2])
        case .qwen2, .qwen3: (vocabSize, intermediateSize, maxPositions, kvHeads, bos, eos) = (151936, 22016, 32768, 32, [], [])
        }
    }
}

/// Typed lookups into the config object, each error naming the file and the key.
struct ConfigReader {
    let root: [String: JSONValue]
    let path: String

    func invalid(_ reason: String) -> FormatError { .invalid(path: path, reason: reason) }
    func unsupported(_ reason: String) -> FormatError { .unsupported(path: path, reason: reason) }

    func family() throws -> LlamaArchitecture {
        let supported = LlamaArchitecture.allCases.map(\.rawValue).joined(separator: ", ")
        if let value = root["model_type"], value != .null {
            guard let name = value.stringValue else { throw invalid("model_type is not a string") }
            guard let family = LlamaArchitecture(rawValue: name) else {
                throw unsupported("model_type '\(name)' (supported: \(supported))")
            }
            return family  // transformers' Auto classes choose by model_type alone
        }
        guard let names = root["architectures"]?.arrayValue?.compactMap(\.stringValue), !names.isEmpty else {
            throw invalid("missing model_type (and no architectures to infer it from)")
        }
        let families = Set(names.compactMap { name in
            LlamaArchitecture.allCases.first { [$0.causalLMArchitecture, $0.baseModelArchitecture].contains(name) }
        })
        guard families.count == 1, let family = families.first,
              names.allSatisfy({ [family.causalLMArchitecture, family.baseModelArchitecture].contains($0) }) else {
            throw unsupported("architectures \(names) without model_type (supported: "
                              + LlamaArchitecture.allCases.map(\.causalLMArchitecture).joined(separator: ", ") + ")")
        }
        return family
    }

    func int(_ key: String, default fallback: Int) throws -> Int {
        guard let value = root[key] else { return fallback }
        guard let i = value.intValue else { throw invalid("\(key) is not an integer") }
        return i
    }

    /// An integer that may be `null` (nil); `absent` when the key is missing.
    func optionalInt(_ key: String, absent: Int?) throws -> Int? {
        guard let value = root[key] else { return absent }
        if value == .null { return nil }
        guard let i = value.intValue else { throw invalid("\(key) is not an integer") }
        return i
    }

    func double(_ key: String, default fallback: Double) throws -> Double {
        guard let value = root[key] else { return fallback }
        guard let d = value.doubleValue else { throw invalid("\(key) is not a number") }
        return d
    }

    func bool(_ key: String, default fallback: Bool) throws -> Bool {
        guard let value = root[key] else { return fallback }
        guard let b = value.boolValue else { throw invalid("\(key) is not a boolean") }
        return b
    }

    func string(_ key: String, default fallback: String) throws -> String {
        guard let value = root[key] else { return fallback }
        guard let s = value.stringValue else { throw invalid("\(key) is not a string") }
        return s
    }

    /// An id, a list of ids, or null (empty).
    func tokenIds(_ key: String, default fallback: [Int]) throws -> [Int] {
        guard let value = root[key] else { return fallback }
        switch value {
        case .null: return []
        case .array(let items):
            return try items.map { item in
                guard let i = item.intValue else { throw invalid("\(key) holds a non-integer") }
                return i
            }
        default:
            guard let i = value.intValue else { throw invalid("\(key) is not an integer or a list of integers") }
            return [i]
        }
    }

    /// `dtype`, else the older `torch_dtype` (transformers keeps `dtype` when both are set).
    func dtype() throws -> String? {
        for key in ["dtype", "torch_dtype"] {
            guard let value = root[key], value != .null else { continue }
            guard let s = value.stringValue else { throw invalid("\(key) is not a string") }
            return s
        }
        return nil
    }

    /// Per-layer sliding windows as each family's model applies them.
    func slidingWindows(family: LlamaArchitecture, layers: Int) throws -> [Int?] {
        let layerTypes: [String]? = try {
            guard let value = root["layer_types"], value != .null else { return nil }
            guard let items = value.arrayValue, items.allSatisfy({ $0.stringValue != nil }) else {
                throw invalid("layer_types is not a list of strings")
            }
            return items.compactMap(\.stringValue)
        }()
        if let layerTypes, layerTypes.count != layers {
            throw invalid("layer_types has \(layerTypes.count) entries for num_hidden_layers \(layers)")
        }
        if let other = layerTypes?.first(where: { $0 != "full_attention" && $0 != "sliding_attention" }) {
            throw unsupported("layer_types entry '\(other)' (supported: full_attention, sliding_attention)")
        }
        switch family {
        case .llama, .mistral:
            // LlamaModel and MistralModel ignore layer_types; alternating attention is another model (Ministral).
            if layerTypes?.contains("sliding_attention") == true {
                throw unsupported("layer_types with sliding_attention entries for model_type \(family.rawValue), "
                                  + "whose transformers model ignores them (alternating sliding attention is Ministral's)")
            }
            guard family == .mistral else { return Array(repeating: nil, count: layers) }
            let window = try optionalInt("sliding_window", absent: 4096)
            return Array(repeating: window, count: layers)
        case .qwen2, .qwen3:
            // Qwen2Config.__post_init__: the window applies only with use_sliding_window, and (when layer_types is
            // not given) only to layers from max_window_layers on.
            let use = try bool("use_sliding_window", default: false)
            let window = use ? try optionalInt("sliding_window", absent: 4096) : nil
            let maxWindowLayers = try int("max_window_layers", default: 28)
            let types = layerTypes ?? (0..<layers).map { window != nil && $0 >= maxWindowLayers ? "sliding_attention" : "full_attention" }
            if window == nil, let layer = types.firstIndex(of: "sliding_attention") {
                throw unsupported("layer_types marks layer \(layer) sliding_attention but no sliding window is set "
                                  + "(use_sliding_window \(use), sliding_window null or unused)")
            }
            return types.map { $0 == "sliding_attention" ? window : nil }
        }
    }

    /// RoPE base and scaling, normalized as transformers 5.24's `convert_rope_params_to_dict` and
    /// `standardize_rope_params` do: a non-empty `rope_scaling` replaces `rope_parameters`; `rope_theta` inside the
    /// dict wins over the top-level key (default 10000); `rope_type` wins over the legacy `type` (default "default");
    /// a top-level `original_max_position_embeddings` overrides the dict's for llama3/yarn (the model's RoPE init
    /// re-runs the standardization once that key has become an attribute), else the dict's, else max_positions.
    func rope(maxPositions: Int) throws -> (theta: Double, scaling: RoPEScaling) {
        var source = "rope_parameters"
        var dict: [String: JSONValue] = [:]
        if let scaling = root["rope_scaling"], scaling != .null {
            guard let object = scaling.objectValue else { throw invalid("rope_scaling is not an object") }
            if !object.isEmpty { (dict, source) = (object, "rope_scaling") }
        }
        if source == "rope_parameters", let parameters = root["rope_parameters"], parameters != .null {
            guard let object = parameters.objectValue else { throw invalid("rope_parameters is not an object") }
            dict = object
        }
        if let nested = dict.first(where: { $0.value.objectValue != nil }) {
            throw unsupported("\(source).\(nested.key): RoPE parameters per layer type")
        }
        func number(_ key: String) throws -> Double? {
            guard let value = dict[key], value != .null else { return nil }
            guard let d = value.doubleValue else { throw invalid("\(source).\(key) is not a number") }
            return d
        }
        func required(_ key: String, _ type: String) throws -> Double {
            guard dict[key] != nil else { throw invalid("\(source).\(key) is missing (required for rope_type '\(type)')") }
            guard let d = try number(key) else { throw invalid("\(source).\(key) is null") }
            return d
        }

        let theta: Double
        if let value = dict["rope_theta"] {
            guard let d = value.doubleValue else { throw invalid("\(source).rope_theta is not a number") }
            theta = d
        } else {
            theta = try double("rope_theta", default: 10000)
        }
        let typeValue = dict["rope_type"] ?? dict["type"] ?? .string("default")
        guard let type = typeValue.stringValue else { throw invalid("\(source).rope_type is not a string") }
        let partial = try number("partial_rotary_factor") ?? double("partial_rotary_factor", default: 1)
        if partial != 1 && type != "default" {  // the default init ignores it (LlamaRotaryEmbedding); the others do not
            throw unsupported("partial_rotary_factor \(partial) with rope_type '\(type)' (only full rotary dimensions)")
        }
        func originalMaxPositions() throws -> Int {
            if let top = root["original_max_position_embeddings"] {
                guard let i = top.intValue else { throw invalid("original_max_position_embeddings is not an integer") }
                return i
            }
            guard let value = dict["original_max_position_embeddings"] else { return maxPositions }
            guard let i = value.intValue else { throw invalid("\(source).original_max_position_embeddings is not an integer") }
            return i
        }

        switch type {
        case "default":
            return (theta, .none)
        case "linear":
            return (theta, .linear(factor: try required("factor", type)))
        case "llama3":
            return (theta, .llama3(Llama3RoPEScaling(
                factor: try required("factor", type), lowFreqFactor: try required("low_freq_factor", type),
                highFreqFactor: try required("high_freq_factor", type), originalMaxPositions: try originalMaxPositions())))
        case "yarn":
            guard dict["factor"] != nil else { throw invalid("\(source).factor is missing (required for rope_type 'yarn')") }
            let original = try originalMaxPositions()
            let truncate: Bool
            switch dict["truncate"] {
            case nil: truncate = true
            case .null?: truncate = false  // `config.rope_parameters.get("truncate", True)` is None: falsy
            case .bool(let b)?: truncate = b
            default: throw invalid("\(source).truncate is not a boolean")
            }
            // `x or default`: a null or zero beta takes the default; so do mscale/mscale_all_dim when null or 0.
            let nonZero = { (d: Double?) in d == 0 ? nil : d }
            return (theta, .yarn(YaRNRoPEScaling(
                factor: try number("factor") ?? Double(maxPositions) / Double(original),
                originalMaxPositions: original, attentionFactor: try number("attention_factor"),
                betaFast: nonZero(try number("beta_fast")) ?? 32, betaSlow: nonZero(try number("beta_slow")) ?? 1,
                mscale: nonZero(try number("mscale")), mscaleAllDim: nonZero(try number("mscale_all_dim")),
                truncate: truncate)))
        default:
            throw unsupported("\(source).rope_type '\(type)' (supported: default, linear, llama3, yarn)")
        }
    }
}
