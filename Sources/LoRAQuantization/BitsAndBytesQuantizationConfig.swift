// config.json's `quantization_config` for a bitsandbytes 4-bit model, as transformers 5 writes it
// (`BitsAndBytesConfig.to_dict()`, keys sorted by `save_pretrained`):
//     "quantization_config": {"_load_in_4bit": true, "_load_in_8bit": false, "bnb_4bit_compute_dtype": "float32",
//       "bnb_4bit_quant_storage": "uint8", "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": true,
//       "llm_int8_enable_fp32_cpu_offload": false, "llm_int8_has_fp16_weight": false,
//       "llm_int8_skip_modules": null, "llm_int8_threshold": 6.0, "load_in_4bit": true, "load_in_8bit": false,
//       "quant_method": "bitsandbytes"}
// Reading refuses by name what this project does not run: other quantization methods, 8-bit bitsandbytes,
// FP4, storages other than uint8. Missing fields take transformers' defaults (quant type "fp4", no double quant,
// compute dtype float32, storage uint8). The blocksize is not part of the config: each weight's quant_state says it.
import LoRAFormats
import LoRARuntime

/// A bitsandbytes 4-bit `quantization_config`.
public struct BitsAndBytesQuantizationConfig: Sendable, Equatable {
    /// Always "nf4" for a config this type accepts or writes.
    public let quantType: String
    /// `bnb_4bit_use_double_quant`.
    public var doubleQuantization: Bool
    /// `bnb_4bit_compute_dtype`: the dtype transformers computes the 4-bit layers in (float32, bfloat16, float16).
    public var computeDType: DType
    /// `llm_int8_skip_modules`: modules left unquantized besides transformers' defaults (the output layer).
    public var skipModules: [String]?

    public init(doubleQuantization: Bool = true, computeDType: DType = .float32, skipModules: [String]? = nil) {
        precondition(computeDType.isFloatingPoint, "BitsAndBytesQuantizationConfig: compute dtype \(computeDType) is not a float type")
        (quantType, self.doubleQuantization, self.computeDType, self.skipModules) = ("nf4", doubleQuantization, computeDType, skipModules)
    }

    /// The `quantization_config` of a parsed config.json, or nil when it has none.
    /// - Parameter path: the config file, named in errors.
    public init?(config: [String: JSONValue], path: String) throws {
        guard let value = config["quantization_config"], value != .null else { return nil }
        func invalid(_ reason: String) -> FormatError { .invalid(path: path, reason: "quantization_config: \(reason)") }
        func unsupported(_ reason: String) -> FormatError { .unsupported(path: path, reason: "quantization_config: \(reason)") }
        guard let q = value.objectValue else { throw invalid("not an object") }
        func bool(_ key: String, default fallback: Bool) throws -> Bool {
            guard let v = q[key], v != .null else { return fallback }
            guard let b = v.boolValue else { throw invalid("\(key) is not a boolean") }
            return b
        }
        func string(_ key: String, default fallback: String) throws -> String {
            guard let v = q[key], v != .null else { return fallback }
            guard let s = v.stringValue else { throw invalid("\(key) is not a string") }
            return s
        }
        let method = try string("quant_method", default: "bitsandbytes")
        guard method == "bitsandbytes" else {
            throw unsupported("quant_method \(JSONValue.quote(method)) (only bitsandbytes 4-bit NF4 is supported)")
        }
        if try bool("load_in_8bit", default: false) || bool("_load_in_8bit", default: false) {
            throw unsupported("load_in_8bit: 8-bit bitsandbytes (LLM.int8) is not supported; only 4-bit NF4")
        }
        guard try bool("load_in_4bit", default: false) || bool("_load_in_4bit", default: false) else {
            throw invalid("neither load_in_4bit nor load_in_8bit is true")
        }
        let type = try string("bnb_4bit_quant_type", default: "fp4")
        guard type == "nf4" else {
            throw unsupported("bnb_4bit_quant_type \(JSONValue.quote(type))\(q["bnb_4bit_quant_type"] == nil ? " (transformers' default)" : ""): only nf4 is supported")
        }
        let storage = try string("bnb_4bit_quant_storage", default: "uint8")
        guard storage == "uint8" || storage == "torch.uint8" else {
            throw unsupported("bnb_4bit_quant_storage \(JSONValue.quote(storage)): only uint8 is supported")
        }
        let dtypeName = try string("bnb_4bit_compute_dtype", default: "float32")
        let dtypes: [String: DType] = ["float32": .float32, "bfloat16": .bfloat16, "float16": .float16]
        let bare = dtypeName.hasPrefix("torch.") ? String(dtypeName.dropFirst(6)) : dtypeName
        guard let compute = dtypes[bare] else {
            throw unsupported("bnb_4bit_compute_dtype \(JSONValue.quote(dtypeName)) (float32, bfloat16 or float16)")
        }
        var skip: [String]?
        if let v = q["llm_int8_skip_modules"], v != .null {
            guard let list = v.arrayValue?.map(\.stringValue), list.allSatisfy({ $0 != nil }) else {
                throw invalid("llm_int8_skip_modules is not a list of strings")
            }
            skip = list.map { $0! }
        }
        self.init(doubleQuantization: try bool("bnb_4bit_use_double_quant", default: false), computeDType: compute,
                  skipModules: skip)
    }

    /// The object transformers writes (every key of `BitsAndBytesConfig.to_dict()`), to set as config.json's
    /// `quantization_config`.
    public var json: JSONValue {
        let dtypeName = switch computeDType { case .bfloat16: "bfloat16"; case .float16: "float16"; default: "float32" }
        return .object([
            "_load_in_4bit": .bool(true), "_load_in_8bit": .bool(false),
            "bnb_4bit_compute_dtype": .string(dtypeName), "bnb_4bit_quant_storage": .string("uint8"),
            "bnb_4bit_quant_type": .string(quantType), "bnb_4bit_use_double_quant": .bool(doubleQuantization),
            "llm_int8_enable_fp32_cpu_offload": .bool(false), "llm_int8_has_fp16_weight": .bool(false),
            "llm_int8_skip_modules": skipModules.map { .array($0.map(JSONValue.string)) } ?? .null,
            "llm_int8_threshold": .number(6.0), "load_in_4bit": .bool(true), "load_in_8bit": .bool(false),
            "quant_method": .string("bitsandbytes"),
        ])
    }
}
