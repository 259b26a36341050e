// Writing a Llama-family config.json: the form transformers 5.24 writes for a config built in code, or the file a
// config was read from with only its dtype changed (merge and full fine-tuning write it beside the weights).
import LoRAFormats

extension LlamaConfig {
    /// config.json for this architecture in the form transformers 5.24 writes it (so `from_pretrained` loads it
    /// back to the same values): `rope_parameters` carries the RoPE type and base.
    public var json: JSONValue {
        func ids(_ ids: [Int]) -> JSONValue {
            ids.isEmpty ? .null : ids.count == 1 ? .integer(ids[0]) : .array(ids.map { .integer($0) })
        }
        var rope: [String: JSONValue] = ["rope_type": .string(ropeScaling.typeName), "rope_theta": .number(ropeTheta)]
        switch ropeScaling {
        case .none: break
        case .linear(let factor): rope["factor"] = .number(factor)
        case .llama3(let p):
            rope["factor"] = .number(p.factor)
            rope["low_freq_factor"] = .number(p.lowFreqFactor)
            rope["high_freq_factor"] = .number(p.highFreqFactor)
            rope["original_max_position_embeddings"] = .integer(p.originalMaxPositions)
        case .yarn(let p):
            rope["factor"] = .number(p.factor)
            rope["original_max_position_embeddings"] = .integer(p.originalMaxPositions)
            rope["beta_fast"] = .number(p.betaFast)
            rope["beta_slow"] = .number(p.betaSlow)
            rope["truncate"] = .bool(p.truncate)
            if let a = p.attentionFactor { rope["attention_factor"] = .number(a) }
            if let m = p.mscale { rope["mscale"] = .number(m) }
            if let m = p.mscaleAllDim { rope["mscale_all_dim"] = .number(m) }
        }
        var object: [String: JSONValue] = [
            "architectures": .array([.string(family.causalLMArchitecture)]), "model_type": .string(family.rawValue),
            "vocab_size": .integer(vocabSize), "hidden_size": .integer(hiddenSize),
            "intermediate_size": .integer(intermediateSize), "num_hidden_layers": .integer(layers),
            "num_attention_heads": .integer(heads), "num_key_value_heads": .integer(kvHeads),
            "head_dim": .integer(headDim), "max_position_embeddings": .integer(maxPositions),
            "rms_norm_eps": .number(rmsNormEpsilon), "hidden_act": .string("silu"),
            "rope_parameters": .object(rope), "tie_word_embeddings": .bool(tieWordEmbeddings),
            "attention_dropout": .number(attentionDropout),
            "bos_token_id": ids(bosTokenIds), "eos_token_id": ids(eosTokenIds),
            "pad_token_id": padTokenId.map { .integer($0) } ?? .null,
        ]
        if let dtype { object["dtype"] = .string(dtype) }
        switch family {
        case .llama:
            object["attention_bias"] = .bool(attentionBias)
            object["mlp_bias"] = .bool(mlpBias)
        case .mistral:
            object["sliding_window"] = slidingWindows.first.flatMap { $0.map { .integer($0) } } ?? .null
        case .qwen2, .qwen3:
            if family == .qwen3 { object["attention_bias"] = .bool(attentionBias) }
            let window = slidingWindows.compactMap { $0 }.first
            object["use_sliding_window"] = .bool(window != nil)
            object["sliding_window"] = window.map { .integer($0) } ?? .null
            object["layer_types"] = .array(slidingWindows.map { .string($0 == nil ? "full_attention" : "sliding_attention") })
        }
        return .object(object)
    }

    /// The config.json to write beside weights saved as `dtype` ("float32", "bfloat16", ...): the file this
    /// config was read from with only `dtype` and `torch_dtype` changed (every field transformers or other tools
    /// read is kept), or `json` for a config built in code.
    public func configJSON(dtype: String) -> JSONValue {
        var object = rawJSON ?? json.objectValue ?? [:]
        object["dtype"] = .string(dtype)
        if object["torch_dtype"] != nil { object["torch_dtype"] = .string(dtype) }
        return .object(object)
    }
}
