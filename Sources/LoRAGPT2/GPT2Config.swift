// A Hugging Face GPT-2 config.json: the fields that change the math are read and checked; fields that would
// change it in ways this implementation does not support are refused by name.
import Foundation
import LoRAFormats
import LoRAQuantization

/// The architecture of a GPT-2 model.
public struct GPT2Config: Sendable, Equatable {
    public var vocabSize: Int
    public var positions: Int
    public var width: Int
    public var layers: Int
    public var heads: Int
    /// The MLP's hidden width (`n_inner`, default 4·width).
    public var inner: Int
    public var layerNormEpsilon: Float
    /// Whether attention scores are divided by √(head dim) (`scale_attn_weights`).
    public var scaleAttentionWeights: Bool

    public var headDim: Int { width / heads }

    public init(vocabSize: Int, positions: Int, width: Int, layers: Int, heads: Int, inner: Int? = nil,
                layerNormEpsilon: Float = 1e-5, scaleAttentionWeights: Bool = true) throws {
        (self.vocabSize, self.positions, self.width, self.layers, self.heads) = (vocabSize, positions, width, layers, heads)
        self.inner = inner ?? 4 * width
        (self.layerNormEpsilon, self.scaleAttentionWeights) = (layerNormEpsilon, scaleAttentionWeights)
        try validate(path: "config")
    }

    /// `gpt2-small`: 12 layers, 12 heads, 768 wide, vocab 50257, 1024 positions.
    public static let small = try! GPT2Config(vocabSize: 50257, positions: 1024, width: 768, layers: 12, heads: 12)
    /// `tiny`: 2 layers, 4 heads, 128 wide, vocab 256, 128 positions.
    public static let tiny = try! GPT2Config(vocabSize: 256, positions: 128, width: 128, layers: 2, heads: 4)

    func validate(path: String) throws {
        func check(_ ok: Bool, _ reason: String) throws { if !ok { throw FormatError.invalid(path: path, reason: reason) } }
        let limit = 1 << 20
        for (name, value) in [("n_positions", positions), ("n_embd", width), ("n_layer", layers), ("n_head", heads),
                              ("n_inner", inner)] {
            try check(value >= 1 && value <= limit, "\(name) = \(value) is outside 1...\(limit)")
        }
        // Token ids are int32; the embedding table [vocab_size, n_embd] must be one tensor (at most 2^31 − 1 elements,
        // the kernels' index range). Both bound vocab_size; nothing else does.
        let largestTensor = Int(Int32.max)
        try check(vocabSize >= 1 && vocabSize <= largestTensor,
                  "vocab_size = \(vocabSize) is outside 1...\(largestTensor) (token ids are int32)")
        try check(vocabSize * width <= largestTensor, "vocab_size \(vocabSize) × n_embd \(width) = \(vocabSize * width) "
            + "elements in the token embedding, more than a tensor holds (\(largestTensor))")
        try check(width % heads == 0, "n_embd \(width) is not a multiple of n_head \(heads)")
        try check(layerNormEpsilon.isFinite && layerNormEpsilon > 0, "layer_norm_epsilon \(layerNormEpsilon) must be positive")
    }

    /// Reads `config.json`.
    public init(contentsOf path: String) throws {
        try self.init(json: JSONValue.readObject(path: path), path: path)
    }

    init(json root: [String: JSONValue], path: String) throws {
        func unsupported(_ reason: String) -> FormatError { .unsupported(path: path, reason: reason) }
        func int(_ key: String, _ fallback: Int? = nil) throws -> Int {
            guard let value = root[key], value != .null else {
                if let fallback { return fallback }
                throw FormatError.invalid(path: path, reason: "missing \(key)")
            }
            guard let i = value.intValue else { throw FormatError.invalid(path: path, reason: "\(key) is not an integer") }
            return i
        }
        if let type = root["model_type"], type != .string("gpt2") {
            throw unsupported("model_type \(type.stringValue.map { "'\($0)'" } ?? "(not a string)"): only gpt2 models are supported")
        }
        _ = try BitsAndBytesQuantizationConfig(config: root, path: path)  // bitsandbytes NF4 only; others refused by name
        let activation = root["activation_function"]?.stringValue ?? "gelu_new"
        guard ["gelu_new", "gelu_pytorch_tanh"].contains(activation) else {
            throw unsupported("activation_function '\(activation)' (supported: gelu_new, gelu_pytorch_tanh)")
        }
        for flag in ["scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn", "add_cross_attention"]
            where root[flag]?.boolValue == true {
            throw unsupported("\(flag) = true")
        }
        let width = try int("n_embd")
        let epsilon = root["layer_norm_epsilon"].map { $0 == .null ? 1e-5 : $0.doubleValue } ?? 1e-5
        guard let epsilon else { throw FormatError.invalid(path: path, reason: "layer_norm_epsilon is not a number") }
        let scale = root["scale_attn_weights"].map { $0.boolValue } ?? true
        guard let scale else { throw FormatError.invalid(path: path, reason: "scale_attn_weights is not a boolean") }
        (vocabSize, positions, self.width) = (try int("vocab_size"), try int("n_positions"), width)
        (layers, heads, inner) = (try int("n_layer"), try int("n_head"), try int("n_inner", 4 * width))
        (layerNormEpsilon, scaleAttentionWeights) = (Float(epsilon), scale)
        try validate(path: path)
    }

    /// config.json for this architecture, in the form transformers writes (so it loads the folder).
    public var json: JSONValue {
        .object([
            "architectures": .array([.string("GPT2LMHeadModel")]), "model_type": .string("gpt2"),
            "vocab_size": .integer(vocabSize), "n_positions": .integer(positions), "n_ctx": .integer(positions),
            "n_embd": .integer(width), "n_layer": .integer(layers), "n_head": .integer(heads),
            "n_inner": inner == 4 * width ? .null : .integer(inner),
            "layer_norm_epsilon": .number(Double(layerNormEpsilon)), "activation_function": .string("gelu_new"),
            "scale_attn_weights": .bool(scaleAttentionWeights), "tie_word_embeddings": .bool(true),
            "resid_pdrop": .number(0.1), "embd_pdrop": .number(0.1), "attn_pdrop": .number(0.1),
            "bos_token_id": .integer(vocabSize - 1), "eos_token_id": .integer(vocabSize - 1),
        ])
    }
}
