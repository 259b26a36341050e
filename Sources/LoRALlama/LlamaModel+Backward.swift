// The Llama family's backward pass (the loss is `LanguageModel.loss`). With adapters only the LoRA parameters
// receive gradients (they accumulate; `zeroGradients` clears them): frozen weights pass dx through, and the
// embeddings, being frozen, get nothing, so the first layer's input gradient is never formed. In full fine-tuning
// every weight gets one (RMSNorm weights, embeddings and an untied LM head included).
import LoRAModels
import LoRANN
import LoRARuntime

extension LlamaModel {
    public func backward(dlogits: Tensor) throws {
        guard let saved, let final = saved.final else { throw LoRAError.invalidState("\(modelType): backward before forward") }
        let dx = try backend.empty(final.x.shape)
        let full = fullGradients
        if let full {  // the LM head: the embeddings' gradient when tied
            try backend.gemm(GEMM(a: dlogits, b: final.h, c: full.lmHead ?? full.embedTokens, transposeA: true, beta: 1))
        }
        try backend.rmsNormBackward(RMSNormBackward(x: final.x, gamma: norm, rstd: final.rstd, dy: backend.matmul(dlogits, lmHead),
                                                    dx: dx, dgamma: full?.norm))
        for (index, layer) in layers.enumerated().reversed() {
            let activations: LayerActivations
            if saved.checkpoints.isEmpty {
                activations = saved.layers[index]
            } else {  // gradient checkpointing: this layer's activations again, its dropout masks replayed
                activations = try saved.checkpoints[index].replay(modules: layer.modules) {
                    try forward(layer, $0, batch: saved.batch, length: saved.length, cache: nil, segments: saved.segments).1
                }
            }
            try backward(layer, activations, dx: dx, batch: saved.batch, length: saved.length, segments: saved.segments,
                         norms: full?.norms[index], needsInput: index > 0 || full != nil)
            if !saved.checkpoints.isEmpty { layer.modules.forEach { $0.releaseSavedActivations() } }
        }
        if let full { try backend.embeddingBackward(EmbeddingBackward(indices: saved.ids, dOutput: dx, dTable: full.embedTokens)) }
    }

    /// Turns dx (the gradient at the layer's output) into the gradient at its input, in place. `norms`: the layer's
    /// norm-weight gradients in full fine-tuning, in `Layer.norms` order.
    private func backward(_ layer: Layer, _ a: LayerActivations, dx: Tensor, batch: Int, length t: Int,
                          segments: DeviceSegments?, norms: [Tensor]?, needsInput: Bool) throws {
        let (d, heads, kvHeads) = (config.headDim, config.heads, config.kvHeads)
        let n = batch * t
        // MLP branch: out = middle + down(silu(gate(h2))·up(h2)), h2 = RMSNorm(middle).
        let dActivated = try layer.down.backward(dx)
        let (dGate, dUp) = (try backend.empty(a.gate.shape), try backend.empty(a.up.shape))
        try backend.swigluBackward(SwiGLUBackward(gate: a.gate, up: a.up, dy: dActivated, dGate: dGate, dUp: dUp))
        let dh2 = try layer.gate.backward(dGate)
        try layer.up.backward(dUp, into: dh2, accumulate: true)
        try backend.rmsNormBackward(RMSNormBackward(x: a.middle, gamma: layer.postAttentionNorm, rstd: a.rstd2, dy: dh2, dx: dx,
                                                    dgamma: norms?[1], accumulate: true))
        // Attention branch: middle = input + o(attention(rope(q), rope(k), v)), q, k, v projections of RMSNorm(input).
        let dContext = try layer.o.backward(dx)
        let (dq, dk, dv) = (try backend.empty(a.q.shape), try backend.empty(a.k.shape), try backend.empty(a.v.shape))
        try backend.attentionBackward(AttentionBackward(
            try attentionShape(batch: batch, length: t, keys: t, layer: layer.index), query: headView(a.q, length: t), key: headView(a.k, length: t),
            value: headView(a.v, length: t), probabilities: a.probabilities, dContext: headView(dContext, length: t),
            dQuery: headView(dq, length: t), dKey: headView(dk, length: t), dValue: headView(dv, length: t),
            segmentStarts: segments?.starts))
        try rope(dq, heads: heads, length: t, start: 0, positions: segments?.positions, inverse: true)
        try rope(dk, heads: kvHeads, length: t, start: 0, positions: segments?.positions, inverse: true)
        var (dqPre, dkPre) = (dq, dk)
        if let qNorm = layer.qNorm, let kNorm = layer.kNorm, let qPre = a.qPre, let kPre = a.kPre, let qRstd = a.qRstd, let kRstd = a.kRstd {
            (dqPre, dkPre) = (try backend.empty(dq.shape), try backend.empty(dk.shape))
            try backend.rmsNormBackward(RMSNormBackward(x: qPre.reshaped([n * heads, d]), gamma: qNorm, rstd: qRstd,
                                                        dy: dq.reshaped([n * heads, d]), dx: dqPre.reshaped([n * heads, d]),
                                                        dgamma: norms?[2]))
            try backend.rmsNormBackward(RMSNormBackward(x: kPre.reshaped([n * kvHeads, d]), gamma: kNorm, rstd: kRstd,
                                                        dy: dk.reshaped([n * kvHeads, d]), dx: dkPre.reshaped([n * kvHeads, d]),
                                                        dgamma: norms?[3]))
        }
        guard needsInput else {
            for (module, dy) in [(layer.q, dqPre), (layer.k, dkPre), (layer.v, dv)] { try module.accumulateGradients(dy) }
            return
        }
        let dh1 = try layer.q.backward(dqPre)
        try layer.k.backward(dkPre, into: dh1, accumulate: true)
        try layer.v.backward(dv, into: dh1, accumulate: true)
        try backend.rmsNormBackward(RMSNormBackward(x: a.input, gamma: layer.inputNorm, rstd: a.rstd1, dy: dh1, dx: dx,
                                                    dgamma: norms?[0], accumulate: true))
    }
}
