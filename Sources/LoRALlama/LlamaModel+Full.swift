// Full fine-tuning of a Llama-family model (every weight trainable, under transformers' names), the parameter
// and memory accounting the trainer's guard needs, and writing the model back as a Hugging Face folder.
import Foundation
import LoRAAdapters
import LoRAFormats
import LoRAModels
import LoRANN
import LoRARuntime

extension LlamaModel {
    public var isFullTraining: Bool { fullGradients != nil }

    /// Gives every weight a gradient (float32 weights only: convert a bf16/f16 checkpoint with `--dtype float32`).
    public func enableFullTraining() throws {
        guard loraConfig == nil else { throw LoRAConfigError("full fine-tuning trains the weights themselves; do not add adapters") }
        guard fullGradients == nil else { return }
        let weights = [embedTokens, lmHead] + linearModules.compactMap { $0.dense?.weight }
        if let typed = weights.first(where: { $0.dtype != .float32 }) {
            throw LoRAConfigError("full fine-tuning updates the weights in float32, but they are stored as \(typed.dtype); load with dtype float32")
        }
        func zeros(like t: Tensor) throws -> Tensor { try backend.zeros(t.shape) }
        releasePackedWeights()
        for module in linearModules { try module.enableGradients() }
        fullGradients = FullGradients(embedTokens: try zeros(like: embedTokens), norm: try zeros(like: norm),
                                      lmHead: lmHead === embedTokens ? nil : try zeros(like: lmHead),
                                      norms: try layers.map { try $0.norms.map { try zeros(like: $0.1) } })
    }

    public var fullTrainingParameters: [TrainableParameter] {
        guard let full = fullGradients else { return [] }
        var list = [TrainableParameter(name: "model.embed_tokens.weight", value: embedTokens, gradient: full.embedTokens)]
        for (i, layer) in layers.enumerated() {
            for ((name, value), gradient) in zip(layer.norms, full.norms[i]) {
                list.append(TrainableParameter(name: "model.layers.\(i).\(name).weight", value: value, gradient: gradient))
            }
            for module in layer.modules {
                let (dense, gradients) = (module.dense!, module.gradients!)
                list.append(TrainableParameter(name: module.name + ".weight", value: dense.weight, gradient: gradients.weight))
                if let bias = dense.bias, let gradient = gradients.bias {
                    list.append(TrainableParameter(name: module.name + ".bias", value: bias, gradient: gradient))
                }
            }
        }
        list.append(TrainableParameter(name: "model.norm.weight", value: norm, gradient: full.norm))
        if let head = full.lmHead { list.append(TrainableParameter(name: "lm_head.weight", value: lmHead, gradient: head)) }
        return list
    }

    /// Every weight tensor with transformers' name (the LM head only when untied).
    public var namedWeights: [(name: String, tensor: Tensor)] {
        var list: [(String, Tensor)] = [("model.embed_tokens.weight", embedTokens)]
        for (i, layer) in layers.enumerated() {
            list += layer.norms.map { ("model.layers.\(i).\($0.0).weight", $0.1) }
            for module in layer.modules {
                guard let dense = module.dense else { continue }
                list.append((module.name + ".weight", dense.weight))
                if let bias = dense.bias { list.append((module.name + ".bias", bias)) }
            }
        }
        list.append(("model.norm.weight", norm))
        if lmHead !== embedTokens { list.append(("lm_head.weight", lmHead)) }
        return list
    }

    /// The weights (and in full fine-tuning their gradients and AdamW moments, float32), the saved activations of
    /// every layer (inputs, q/k/v, probabilities, the MLP's gate and up, norms' statistics; with gradient
    /// checkpointing every layer's input and one layer's activations), and the logits with their gradient, as a
    /// generous estimate.
    public func trainingStepBytes(batch: Int, length: Int) -> Int {
        let c = config, n = batch * length
        let (qWidth, kvWidth) = (c.heads * c.headDim, c.kvHeads * c.headDim)
        let perLayer = n * (4 * c.hiddenSize + 3 * qWidth + 4 * kvWidth + 4 * c.intermediateSize) + batch * c.heads * length * length
        let transient = n * (2 * c.intermediateSize + 2 * qWidth + 4 * c.hiddenSize)
        let full = isFullTraining ? 3 * baseParameterCount * 4 : 0
        // Gradient checkpointing keeps every layer's input and, in backward, one layer's recomputed activations.
        let saved = gradientCheckpointing ? c.layers * n * c.hiddenSize + perLayer : c.layers * perLayer
        return weightBytes + full + 4 * (saved + transient + 2 * n * c.vocabSize)
    }

    /// Writes config.json (the loaded one with only the dtype and quantization updated, else this config's) and the
    /// weights in their current dtypes (4-bit linears as bitsandbytes' tensors), sharded above `maxShardBytes`
    /// with an index, as transformers' `save_pretrained` does.
    public func save(folder: String) throws {
        try save(folder: folder, maxShardBytes: 5_000_000_000)
    }

    public func save(folder: String, maxShardBytes: Int) throws {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let dtypes = Set(namedWeights.map(\.tensor.dtype)).subtracting([.float32])
        let dtype = dtypes.first ?? .float32
        try writeCheckpoint(namedWeights, items: try quantizedItems(), folder: folder, maxShardBytes: maxShardBytes)
        var json = config.configJSON(dtype: dtype.rawValue).objectValue ?? [:]
        // 4-bit linears need transformers to know they are bitsandbytes'; a dequantized (merged) model must not say so.
        json["quantization_config"] = quantizedModules.isEmpty ? nil : quantization?.configJSON
        try AtomicFile.write(Data((JSONValue.object(json).serialized() + "\n").utf8), to: folder + "/config.json")
    }
}
