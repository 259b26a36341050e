// A Hugging Face config.json for the Llama family (model_type llama, mistral, qwen2, qwen3), read the way
// transformers 5.24 reads it: the same defaults per model type, the same RoPE normalization (`rope_scaling` or
// `rope_parameters`, legacy `type`, top-level `rope_theta`), the same derived values. Fields that would change the
// math in ways this implementation does not support are refused by name; fields that cannot change it are ignored.
//
// What transformers 5.24 does with the fields (models/*/configuration_*.py, modeling_*.py, modeling_rope_utils.py):
// - defaults: llama vocab 32000, hidden 4096, intermediate 11008, 32 layers/heads, 2048 positions, bos 1, eos 2;
//   mistral intermediate 14336, 8 kv heads, 131072 positions, sliding_window 4096, bos 1, eos 2; qwen2/qwen3 vocab
//   151936, intermediate 22016, 32 kv heads, 32768 positions, no bos/eos, qwen3 head_dim 128. rms_norm_eps 1e-6,
//   silu, untied embeddings everywhere. A `null` kv-head count means "as many as heads".
// - biases: Llama q/k/v/o follow `attention_bias` and the MLP `mlp_bias`; Mistral has none (it ignores both keys);
//   Qwen2 always has q/k/v biases and never o_proj's; Qwen3 q/k/v/o follow `attention_bias`, and it adds an RMSNorm
//   over each head's q and k (q_norm, k_norm) before RoPE.
// - `pretraining_tp` is not read by modeling_llama.py in 5.x (it only ever re-sliced the same matmuls): ignored.
// - `attention_dropout` acts only in training mode (dropout on attention probabilities); it is kept as a field so
//   a trainer that has no attention dropout can refuse a non-zero value. Evaluation and generation ignore it.
import Foundation
import LoRAFormats
import LoRAQuantization

/// The model families this reader knows; each is a `model_type` in config.json.
public enum LlamaArchitecture: String, Sendable, CaseIterable {
    case llama, mistral, qwen2, qwen3

    /// The causal-LM class transformers builds for the family, written to `architectures`.
    public var causalLMArchitecture: String {
        switch self {
        case .llama: "LlamaForCausalLM"
        case .mistral: "MistralForCausalLM"
        case .qwen2: "Qwen2ForCausalLM"
        case .qwen3: "Qwen3ForCausalLM"
        }
    }

    /// The bare decoder class (`LlamaModel`, ...), also accepted in `architectures`.
    var baseModelArchitecture: String {
        switch self {
        case .llama: "LlamaModel"
        case .mistral: "MistralModel"
        case .qwen2: "Qwen2Model"
        case .qwen3: "Qwen3Model"
        }
    }
}

/// How RoPE frequencies are rescaled for longer contexts (`rope_type` in transformers).
public enum RoPEScaling: Sendable, Equatable {
    /// `default`: inv_freq[i] = 1 / theta^(2i/d).
    case none
    /// `linear`: every inverse frequency divided by `factor`.
    case linear(factor: Double)
    /// `llama3`: low frequencies divided by `factor`, high ones kept, a smooth ramp between (Llama 3.1).
    case llama3(Llama3RoPEScaling)
    /// `yarn`: NTK-by-parts interpolation plus a cos/sin scale (YaRN, Peng et al. 2023).
    case yarn(YaRNRoPEScaling)

    /// The `rope_type` string.
    public var typeName: String {
        switch self {
        case .none: "default"
        case .linear: "linear"
        case .llama3: "llama3"
        case .yarn: "yarn"
        }
    }
}

/// `rope_type: llama3` parameters.
public struct Llama3RoPEScaling: Sendable, Equatable {
    public var factor: Double
    public var lowFreqFactor: Double
    public var highFreqFactor: Double
    /// The context length before scaling (`original_max_position_embeddings`).
    public var originalMaxPositions: Int

    public init(factor: Double, lowFreqFactor: Double, highFreqFactor: Double, originalMaxPositions: Int) {
        (self.factor, self.lowFreqFactor, self.highFreqFactor) = (factor, lowFreqFactor, highFreqFactor)
        self.originalMaxPositions = originalMaxPositions
    }
}

/// `rope_type: yarn` parameters, with transformers' defaults already applied.
public struct YaRNRoPEScaling: Sendable, Equatable {
    /// The scale factor (a `null` factor in the file is resolved to max_positions / original_max_positions).
    public var factor: Double
    public var originalMaxPositions: Int
    /// The cos/sin scale when the file sets it; otherwise it is derived from `factor`, `mscale`, `mscaleAllDim`.
    public var attentionFactor: Double?
    /// Extrapolation boundary of the ramp (file value, or 32 when absent, null or 0).
    public var betaFast: Double
    /// Interpolation boundary of the ramp (file value, or 1 when absent, null or 0).
    public var betaSlow: Double
    public var mscale: Double?
    public var mscaleAllDim: Double?
    /// Whether the correction range is rounded outward to whole dimensions (absent: true; `null`: false).
    public var truncate: Bool

    public init(factor: Double, originalMaxPositions: Int, attentionFactor: Double? = nil, betaFast: Double = 32,
                betaSlow: Double = 1, mscale: Double? = nil, mscaleAllDim: Double? = nil, truncate: Bool = true) {
        (self.factor, self.originalMaxPositions, self.attentionFactor) = (factor, originalMaxPositions, attentionFactor)
        (self.betaFast, self.betaSlow, self.mscale, self.mscaleAllDim) = (betaFast, betaSlow, mscale, mscaleAllDim)
        self.truncate = truncate
    }
}

/// The architecture of a Llama-family model, as transformers 5.24 reads its config.json.
public struct LlamaConfig: Sendable, Equatable {
    public var family: LlamaArchitecture
    public var vocabSize: Int
    public var hiddenSize: Int
    /// The MLP's hidden width (gate_proj / up_proj outputs).
    public var intermediateSize: Int
    public var layers: Int
    /// Query heads.
    public var heads: Int
    /// Key/value heads (grouped-query attention: heads / kvHeads query heads share each).
    public var kvHeads: Int
    /// Width of one head; q_proj is [heads·headDim, hidden], k_proj/v_proj [kvHeads·headDim, hidden].
    public var headDim: Int
    /// `max_position_embeddings`: what the model was trained for; RoPE tables are not limited to it.
    public var maxPositions: Int
    /// RMSNorm epsilon as written in the file; the model adds it to a float32 variance, so it acts as Float(eps).
    public var rmsNormEpsilon: Double
    /// RoPE base. Kept in double precision: YaRN's correction range is computed from it in double.
    public var ropeTheta: Double
    public var ropeScaling: RoPEScaling
    /// Whether lm_head shares the token embedding matrix.
    public var tieWordEmbeddings: Bool
    /// `attention_bias` (Llama, Qwen3: biases on q/k/v/o); always false for Mistral and Qwen2, whose models
    /// ignore the key. See `qkvBias` and `outputBias` for what each family builds.
    public var attentionBias: Bool
    /// `mlp_bias` (Llama only): biases on gate/up/down projections.
    public var mlpBias: Bool
    /// Per layer, the sliding attention window, or nil for full causal attention. A window w lets query i see
    /// keys j with i − w < j ≤ i (transformers' `sliding_window_overlay`). Mistral applies `sliding_window` to
    /// every layer; Qwen2/Qwen3 to the layers `layer_types` marks `sliding_attention`.
    public var slidingWindows: [Int?]
    /// Dropout on attention probabilities, in training only (see the file header).
    public var attentionDropout: Double
    /// Beginning/end-of-sequence ids (a single id or a list in the file; empty when null).
    public var bosTokenIds: [Int]
    public var eosTokenIds: [Int]
    public var padTokenId: Int?
    /// The weights' dtype as the file names it (`dtype`, or the older `torch_dtype`): "bfloat16", "float32", ...
    public var dtype: String?
    /// The parsed file, so a merged or fully fine-tuned model can be written with every unknown field kept
    /// (see `configJSON(dtype:)`); nil for a config built in code.
    public var rawJSON: [String: JSONValue]?

    /// Whether q_proj, k_proj and v_proj have biases.
    public var qkvBias: Bool { family == .qwen2 || attentionBias }
    /// Whether o_proj has a bias.
    public var outputBias: Bool { attentionBias }
    /// Whether each head's queries and keys pass through an RMSNorm (weight [headDim]) before RoPE (Qwen3).
    public var qkNorm: Bool { family == .qwen3 }
    /// The sliding window of `layer`, or nil for full attention.
    public func slidingWindow(layer: Int) -> Int? { slidingWindows[layer] }

    /// A config built in code; `validate` runs as for a file.
    public init(family: LlamaArchitecture, vocabSize: Int, hiddenSize: Int, intermediateSize: Int, layers: Int, heads: Int,
                kvHeads: Int? = nil, headDim: Int? = nil, maxPositions: Int, rmsNormEpsilon: Double = 1e-6,
                ropeTheta: Double = 10000, ropeScaling: RoPEScaling = .none, tieWordEmbeddings: Bool = false,
                attentionBias: Bool = false, mlpBias: Bool = false, slidingWindows: [Int?]? = nil,
                attentionDropout: Double = 0, bosTokenIds: [Int] = [], eosTokenIds: [Int] = [], padTokenId: Int? = nil,
                dtype: String? = nil) throws {
        (self.family, self.vocabSize, self.hiddenSize, self.intermediateSize) = (family, vocabSize, hiddenSize, intermediateSize)
        (self.layers, self.heads, self.kvHeads) = (layers, heads, kvHeads ?? heads)
        self.headDim = headDim ?? (heads > 0 ? hiddenSize / heads : 0)
        (self.maxPositions, self.rmsNormEpsilon, self.ropeTheta, self.ropeScaling) = (maxPositions, rmsNormEpsilon, ropeTheta, ropeScaling)
        (self.tieWordEmbeddings, self.attentionBias, self.mlpBias) = (tieWordEmbeddings, attentionBias, mlpBias)
        self.slidingWindows = slidingWindows ?? Array(repeating: nil, count: max(layers, 0))
        (self.attentionDropout, self.bosTokenIds, self.eosTokenIds) = (attentionDropout, bosTokenIds, eosTokenIds)
        (self.padTokenId, self.dtype, self.rawJSON) = (padTokenId, dtype, nil)
        try validate(path: "config")
    }

    /// Reads `config.json`.
    public init(contentsOf path: String) throws {
        try self.init(json: JSONValue.readObject(path: path), path: path)
    }

    /// Reads a config.json already parsed; `path` names the file in errors.
    public init(json root: [String: JSONValue], path: String) throws {
        let reader = ConfigReader(root: root, path: path)
        family = try reader.family()
        _ = try BitsAndBytesQuantizationConfig(config: root, path: path)  // bitsandbytes NF4 only; others refused by name
        let activation = try reader.string("hidden_act", default: "silu")
        guard activation == "silu" else { throw reader.unsupported("hidden_act '\(activation)' (supported: silu)") }

        let defaults = FamilyDefaults(family)
        vocabSize = try reader.int("vocab_size", default: defaults.vocabSize)
        hiddenSize = try reader.int("hidden_size", default: 4096)
        intermediateSize = try reader.int("intermediate_size", default: defaults.intermediateSize)
        layers = try reader.int("num_hidden_layers", default: 32)
        heads = try reader.int("num_attention_heads", default: 32)
        maxPositions = try reader.int("max_position_embeddings", default: defaults.maxPositions)
        kvHeads = try reader.optionalInt("num_key_value_heads", absent: defaults.kvHeads) ?? heads
        guard heads >= 1 else { throw reader.invalid("num_attention_heads = \(heads) must be at least 1") }
        guard layers >= 1 && layers <= 1 << 20 else {
            throw reader.invalid("num_hidden_layers = \(layers) is outside 1...\(1 << 20)")
        }
        switch family {
        case .llama, .mistral:
            headDim = try reader.optionalInt("head_dim", absent: nil) ?? hiddenSize / heads
        case .qwen2, .qwen3:
            guard root["head_dim"] != .null else { throw reader.invalid("head_dim is null") }
            headDim = try reader.int("head_dim", default: family == .qwen3 ? 128 : hiddenSize / heads)
        }
        if family == .llama && hiddenSize % heads != 0 {  // LlamaConfig.validate_architecture
            throw reader.invalid("hidden_size \(hiddenSize) is not a multiple of num_attention_heads \(heads)")
        }
        rmsNormEpsilon = try reader.double("rms_norm_eps", default: 1e-6)
        tieWordEmbeddings = try reader.bool("tie_word_embeddings", default: false)
        attentionBias = family == .llama || family == .qwen3 ? try reader.bool("attention_bias", default: false) : false
        mlpBias = family == .llama ? try reader.bool("mlp_bias", default: false) : false
        attentionDropout = try reader.double("attention_dropout", default: 0)
        bosTokenIds = try reader.tokenIds("bos_token_id", default: defaults.bos)
        eosTokenIds = try reader.tokenIds("eos_token_id", default: defaults.eos)
        padTokenId = try reader.optionalInt("pad_token_id", absent: nil)
        dtype = try reader.dtype()
        slidingWindows = try reader.slidingWindows(family: family, layers: layers)
        (ropeTheta, ropeScaling) = try reader.rope(maxPositions: maxPositions)
        rawJSON = root
        try validate(path: path)
    }

    /// Checks sizes and values; throws `FormatError.invalid` naming the field.
    func validate(path: String) throws {
        func check(_ ok: Bool, _ reason: @autoclosure () -> String) throws {
            if !ok { throw FormatError.invalid(path: path, reason: reason()) }
        }
        let limit = 1 << 20
        for (name, value) in [("hidden_size", hiddenSize), ("intermediate_size", intermediateSize),
                              ("num_hidden_layers", layers), ("num_attention_heads", heads),
                              ("num_key_value_heads", kvHeads), ("head_dim", headDim),
                              ("max_position_embeddings", maxPositions)] {
            try check(value >= 1 && value <= limit, "\(name) = \(value) is outside 1...\(limit)")
        }
        // Ids are int32; the embedding table must fit one tensor (2^31 - 1 elements).
        try check(vocabSize >= 1 && vocabSize <= Int(Int32.max), "vocab_size = \(vocabSize) is outside 1...2^31-1")
        try check(vocabSize.multipliedReportingOverflow(by: hiddenSize).partialValue <= Int(Int32.max),
                  "vocab_size \(vocabSize) × hidden_size \(hiddenSize) exceeds one tensor's 2^31 - 1 elements")
        try check(heads % kvHeads == 0, "num_attention_heads \(heads) is not a multiple of num_key_value_heads \(kvHeads)")
        try check(headDim % 2 == 0, "head_dim \(headDim) is odd; RoPE rotates pairs of dimensions")
        try check(rmsNormEpsilon.isFinite && rmsNormEpsilon > 0, "rms_norm_eps \(rmsNormEpsilon) must be positive")
        try check(attentionDropout >= 0 && attentionDropout <= 1, "attention_dropout \(attentionDropout) is outside 0...1")
        try check(ropeTheta.isFinite && ropeTheta > 0 && Float(ropeTheta).isFinite,
                  "rope_theta \(ropeTheta) must be positive and finite in float32")
        try check(slidingWindows.count == layers, "\(slidingWindows.count) sliding windows for \(layers) layers")
        for case let window? in slidingWindows { try check(window >= 1, "sliding_window \(window) must be at least 1") }
        let windows = Set(slidingWindows.compactMap { $0 })
        try check(windows.count <= 1, "layers use different sliding windows \(windows.sorted()); config.json has one sliding_window")
        switch family {
        case .llama: try check(windows.isEmpty, "model_type llama has no sliding window")
        case .mistral: try check(windows.isEmpty || !slidingWindows.contains(nil), "mistral applies its sliding window to every layer")
        case .qwen2, .qwen3: break
        }
        try check(!attentionBias || family == .llama || family == .qwen3,
                  "attention_bias is not read by model_type \(family.rawValue) (see qkvBias, outputBias)")
        try check(!mlpBias || family == .llama, "mlp_bias is not read by model_type \(family.rawValue)")
        for id in bosTokenIds + eosTokenIds + (padTokenId.map { [$0] } ?? []) {
            try check(id >= 0 && id < vocabSize, "token id \(id) is outside the vocabulary (size \(vocabSize))")
        }
        switch ropeScaling {
        case .none: break
        case .linear(let factor):
            try check(factor.isFinite && factor > 0, "rope scaling factor \(factor) must be positive")
        case .llama3(let p):
            try check(p.factor.isFinite && p.factor > 0, "rope scaling factor \(p.factor) must be positive")
            try check(p.lowFreqFactor > 0 && p.highFreqFactor.isFinite && p.highFreqFactor != p.lowFreqFactor,
                      "llama3 low_freq_factor \(p.lowFreqFactor) must be positive and differ from high_freq_factor \(p.highFreqFactor)")
            try check(p.originalMaxPositions >= 1, "original_max_position_embeddings \(p.originalMaxPositions) must be positive")
        case .yarn(let p):
            try check(p.factor.isFinite && p.factor > 0, "rope scaling factor \(p.factor) must be positive")
            try check(p.originalMaxPositions >= 1, "original_max_position_embeddings \(p.originalMaxPositions) must be positive")
            try check(p.betaFast.isFinite && p.betaSlow.isFinite && p.betaFast > 0 && p.betaSlow > 0,
                      "yarn beta_fast \(p.betaFast) and beta_slow \(p.betaSlow) must be positive")
            if let a = p.attentionFactor { try check(a.isFinite && a >= 0, "yarn attention_factor \(a) must be non-negative") }
        }
    }
}
