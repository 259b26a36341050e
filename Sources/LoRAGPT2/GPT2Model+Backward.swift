// GPT-2's backward pass (the loss is `LanguageModel.loss`). With adapters only the LoRA parameters receive gradients (they accumulate, as
// PyTorch's do; `zeroGradients` clears them): frozen weights pass dx through, and the embeddings, being frozen, get
// nothing, so the first block's input gradient is never formed. In full fine-tuning every weight gets one.
import LoRAModels
import LoRANN
import LoRARuntime

extension GPT2Model {
    /// Backward from the gradient of the loss with respect to the last forward's logits `[N, V]`.
    public func backward(dlogits: Tensor) throws {
        guard let saved, let final = saved.final else { throw LoRAError.invalidState("GPT-2: backward before forward") }
        let dx = try backend.empty(final.x.shape)
        let full = fullGradients
        if let full {  // the LM head: wte's gradient when tied
            try backend.gemm(GEMM(a: dlogits, b: final.h, c: full.lmHead ?? full.wte, transposeA: true, beta: 1))
        }
        try backend.layerNormBackward(LayerNormBackward(x: final.x, gamma: lnF.gamma, mean: final.mean, rstd: final.rstd,
                                                        dy: backend.matmul(dlogits, lmHead), dx: dx,
                                                        dgamma: full?.lnF.gamma, dbeta: full?.lnF.beta))
        for (index, block) in blocks.enumerated().reversed() {
            let activations: LayerActivations
            if saved.checkpoints.isEmpty {
                activations = saved.layers[index]
            } else {  // gradient checkpointing: this block's activations again, its dropout masks replayed
                activations = try saved.checkpoints[index].replay(modules: block.projections) {
                    try forward(block, $0, batch: saved.batch, length: saved.length, cache: nil, segmentStarts: saved.segmentStarts).1
                }
            }
            try backward(block, activations, dx: dx, batch: saved.batch, length: saved.length, segmentStarts: saved.segmentStarts,
                         norms: full?.norms[index], needsInput: index > 0 || full != nil)
            if !saved.checkpoints.isEmpty { block.projections.forEach { $0.releaseSavedActivations() } }
        }
        if let full {
            try backend.embeddingBackward(EmbeddingBackward(indices: saved.ids, dOutput: dx, dTable: full.wte))
            try backend.embeddingBackward(EmbeddingBackward(indices: saved.positions, dOutput: dx, dTable: full.wpe))
        }
    }

    /// Turns dx (the gradient at the block's output) into the gradient at its input, in place.
    private func backward(_ block: Block, _ a: LayerActivations, dx: Tensor, batch: Int, length: Int, segmentStarts: Tensor?,
                          norms: (ln1: (gamma: Tensor, beta: Tensor), ln2: (gamma: Tensor, beta: Tensor))?, needsInput: Bool) throws {
        // MLP branch: out = middle + mlpOut(gelu(fc(ln_2(middle)))).
        let dActivated = try block.mlpOut.backward(dx)
        try backend.geluBackward(GELUBackward(x: a.preActivation, dy: dActivated, dx: dActivated))
        let dh2 = try block.fc.backward(dActivated)
        try backend.layerNormBackward(LayerNormBackward(x: a.middle, gamma: block.ln2.gamma, mean: a.mean2, rstd: a.rstd2,
                                                        dy: dh2, dx: dx, dgamma: norms?.ln2.gamma, dbeta: norms?.ln2.beta,
                                                        accumulate: true))
        // Attention branch: middle = input + attentionOut(attention(ln_1(input))).
        let dContext = try block.attentionOut.backward(dx)
        let dqkv = try attentionBackward(a, dContext: dContext, batch: batch, length: length, segmentStarts: segmentStarts)
        guard needsInput else { return try block.attention.accumulateGradients(dqkv) }
        let dh1 = try block.attention.backward(dqkv)
        try backend.layerNormBackward(LayerNormBackward(x: a.input, gamma: block.ln1.gamma, mean: a.mean1, rstd: a.rstd1,
                                                        dy: dh1, dx: dx, dgamma: norms?.ln1.gamma, dbeta: norms?.ln1.beta,
                                                        accumulate: true))
    }

    /// dqkv `[N, 3C]` from the context's gradient `[N, C]` (the `AttentionBackward` op).
    private func attentionBackward(_ a: LayerActivations, dContext: Tensor, batch: Int, length t: Int,
                                   segmentStarts: Tensor?) throws -> Tensor {
        let dqkv = try backend.empty(a.qkv.shape)
        let (q, k, v) = (qkvHeads(a.qkv, part: 0, length: t), qkvHeads(a.qkv, part: 1, length: t), qkvHeads(a.qkv, part: 2, length: t))
        try backend.attentionBackward(AttentionBackward(
            try attentionShape(batch: batch, length: t, keys: t), query: q, key: k, value: v, probabilities: a.probabilities,
            dContext: contextHeads(dContext, length: t), dQuery: qkvHeads(dqkv, part: 0, length: t),
            dKey: qkvHeads(dqkv, part: 1, length: t), dValue: qkvHeads(dqkv, part: 2, length: t), segmentStarts: segmentStarts))
        return dqkv
    }
}
