// Writing the model (with merged adapters: W' = W + s·(B·A)ᵀ for GPT-2's [in, out] Conv1D weights) as a Hugging
// Face folder that transformers loads: config.json and the weights in their device dtypes, streamed tensor by
// tensor into model.safetensors, or into shards with model.safetensors.index.json above a size.
import Foundation
import LoRAFormats
import LoRAModels
import LoRARuntime

extension GPT2Model {
    /// Writes the current weights (merged ones included) as config.json + model.safetensors in `folder`.
    public func save(folder: String) throws {
        try save(folder: folder, maxShardBytes: 5_000_000_000)
    }

    /// Writes the current weights in their dtypes (names as transformers writes GPT-2: `transformer.` prefix, an
    /// untied `lm_head.weight` without it), sharded above `maxShardBytes` with an index as `save_pretrained` does,
    /// and config.json with `dtype` the matrices' storage and `tie_word_embeddings` as this model has it.
    public func save(folder: String, maxShardBytes: Int) throws {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let weights = namedWeights
        try writeCheckpoint(weights, items: try quantizedItems(), folder: folder, maxShardBytes: maxShardBytes)
        // Norms and biases are float32 whatever the matrices are; config's dtype names the matrices'.
        let dtype = Set(weights.map(\.tensor.dtype)).subtracting([.float32]).first ?? .float32
        var json = config.json.objectValue ?? [:]
        json["dtype"] = .string(dtype.rawValue)
        // transformers ties lm_head to wte when this is true, ignoring a saved lm_head.weight.
        json["tie_word_embeddings"] = .bool(lmHead === wte)
        // 4-bit projections need transformers to know they are bitsandbytes'; a dequantized (merged) model must not say so.
        json["quantization_config"] = quantizedModules.isEmpty ? nil : quantization?.configJSON
        try AtomicFile.write(Data((JSONValue.object(json).serialized() + "\n").utf8), to: folder + "/config.json")
    }
}
