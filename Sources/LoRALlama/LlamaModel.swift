// The Llama family (Llama, Mistral, Qwen2, Qwen3) on any backend, as transformers computes it in float32: token
// embeddings, then per layer x + o(attn(rope(q), rope(k), v)) over RMSNorm(x) and x + down(silu(gate)·up) over
// RMSNorm(x), a final RMSNorm and the LM head. Grouped-query attention (kv heads shared by groups of query heads),
// Mistral's sliding window, Qwen2's q/k/v bias and Qwen3's per-head q/k RMSNorm before RoPE are options of the one
// model. Forward saves what backward needs (LlamaModel+Backward.swift). Packed rows (`forward(_:segments:)`) rotate
// each token by its position within its example and attend only within it (PackedSegments.swift).
//
// Shapes: B sequences of T tokens, N = B·T rows, C = hidden size, H query heads and KV kv heads of D = head dim,
// I = intermediate size, V = vocab.
import Foundation
import LoRAAdapters
import LoRAFormats
import LoRAModels
import LoRANN
import LoRARuntime

/// A Llama-family causal language model on one backend.
public final class LlamaModel: LanguageModel {
    public let config: LlamaConfig
    public let backend: any Backend
    /// How the 4-bit linears were quantized; nil when none are.
    public let quantization: NF4Options?
    /// `[V, C]`.
    let embedTokens: Tensor
    /// The final norm's weight `[C]`.
    let norm: Tensor
    /// The output projection `[V, C]`: `embedTokens` itself when tied.
    let lmHead: Tensor
    let layers: [Layer]
    /// RoPE tables `[maxPositions, D/2]`, attention scaling folded in.
    let ropeCos: Tensor, ropeSin: Tensor
    public var loraConfig: LoRAConfig?
    public let adapterSlots = AdapterSlots()
    public var training = false { didSet { propagateTraining() } }
    public var gradientCheckpointing = false
    var saved: Saved?
    var fullGradients: FullGradients?

    public var modelType: String { config.family.rawValue }
    public var vocabularySize: Int { config.vocabSize }
    public var maxPositions: Int { config.maxPositions }
    public var cacheGeometry: KVCache.Geometry { KVCache.Geometry(layers: config.layers, width: config.kvHeads * config.headDim) }
    public var endOfSequenceTokens: Set<Int> { Set(config.eosTokenIds) }
    public var defaultLoRATargets: LoRAConfig.Targets { LoRAConfig.llamaAttentionTargets }

    final class Layer {
        let index: Int
        let inputNorm: Tensor, postAttentionNorm: Tensor
        /// Qwen3's per-head norms `[D]`.
        let qNorm: Tensor?, kNorm: Tensor?
        let q: LinearModule, k: LinearModule, v: LinearModule, o: LinearModule
        let gate: LinearModule, up: LinearModule, down: LinearModule

        init(_ i: Int, _ weights: LlamaWeights) throws {
            let p = "model.layers.\(i)."
            index = i
            (inputNorm, postAttentionNorm) = (try weights.norm(p + "input_layernorm"), try weights.norm(p + "post_attention_layernorm"))
            qNorm = weights.config.qkNorm ? try weights.norm(p + "self_attn.q_norm") : nil
            kNorm = weights.config.qkNorm ? try weights.norm(p + "self_attn.k_norm") : nil
            (q, k, v, o) = (try weights.linear(p + "self_attn.q_proj"), try weights.linear(p + "self_attn.k_proj"),
                            try weights.linear(p + "self_attn.v_proj"), try weights.linear(p + "self_attn.o_proj"))
            (gate, up, down) = (try weights.linear(p + "mlp.gate_proj"), try weights.linear(p + "mlp.up_proj"),
                                try weights.linear(p + "mlp.down_proj"))
        }

        var modules: [LinearModule] { [q, k, v, o, gate, up, down] }
        var norms: [(String, Tensor)] {
            [("input_layernorm", inputNorm), ("post_attention_layernorm", postAttentionNorm)]
                + (qNorm.map { [("self_attn.q_norm", $0)] } ?? []) + (kNorm.map { [("self_attn.k_norm", $0)] } ?? [])
        }
    }

    /// What one forward keeps for backward.
    struct Saved {
        let batch: Int, length: Int
        let ids: Tensor
        /// Packed rows' segment starts and positions (nil: unpacked).
        let segments: DeviceSegments?
        /// Every layer's activations, or with gradient checkpointing none of them: `checkpoints` instead.
        var layers: [LayerActivations] = []
        /// With gradient checkpointing: every layer's input, from which backward recomputes its activations.
        var checkpoints: [BlockCheckpoint] = []
        var final: (x: Tensor, h: Tensor, rstd: Tensor)?
    }

    struct LayerActivations {
        let input: Tensor, rstd1: Tensor
        /// q and k before their Qwen3 norms, with the norms' statistics.
        let qPre: Tensor?, qRstd: Tensor?, kPre: Tensor?, kRstd: Tensor?
        /// After RoPE.
        let q: Tensor, k: Tensor, v: Tensor
        let probabilities: Tensor
        let middle: Tensor, rstd2: Tensor
        let gate: Tensor, up: Tensor
    }

    /// Gradients of every weight that is not a linear module's, in full fine-tuning.
    struct FullGradients {
        let embedTokens: Tensor, norm: Tensor
        /// lm_head's own, when untied.
        let lmHead: Tensor?
        let norms: [[Tensor]]
    }

    /// Loads a Hugging Face folder (config.json, model.safetensors or shards) onto `backend`.
    public convenience init(folder: String, backend: any Backend, options: ModelLoadOptions = ModelLoadOptions()) throws {
        try self.init(weights: LlamaWeights.load(folder: folder, backend: backend, options: options))
    }

    /// A model of `config` with random weights, initialized as transformers initializes Llama (training from scratch).
    /// `options` may store the weights in another dtype or quantize the linears to NF4 (QLoRA benchmarks).
    public convenience init(config: LlamaConfig, seed: UInt64, backend: any Backend, options: ModelLoadOptions = ModelLoadOptions()) throws {
        try self.init(weights: LlamaWeights.random(config, seed: seed, backend: backend, options: options))
    }

    init(weights: LlamaWeights) throws {
        (config, backend, quantization) = (weights.config, weights.backend, weights.quantization)
        embedTokens = try weights.tensor("model.embed_tokens.weight")
        norm = try weights.norm("model.norm")
        lmHead = weights.hasTensor("lm_head.weight") ? try weights.tensor("lm_head.weight") : embedTokens
        layers = try (0..<config.layers).map { try Layer($0, weights) }
        let (cos, sin) = config.cosSinTables(positions: config.maxPositions)
        ropeCos = try backend.upload(cos, shape: [config.maxPositions, config.headDim / 2])
        ropeSin = try backend.upload(sin, shape: [config.maxPositions, config.headDim / 2])
    }

    public var linearModules: [LinearModule] { layers.flatMap(\.modules) }
    public var outputWeight: Tensor { lmHead }

    // MARK: - Forward

    public func forward(_ tokens: [[Int]], cache: KVCache?, segments: DeviceSegments?, logits positions: LogitPositions) throws -> Tensor {
        // Ragged rows (a cache and segments) have their own positions; the cache's columns are not positions.
        let (batch, length) = try checkTokens(tokens, start: segments == nil ? cache?.length ?? 0 : 0)
        guard !training || config.attentionDropout == 0 else {
            throw LoRAError.invalidArgument("\(modelType): config.json's attention_dropout \(config.attentionDropout) would drop attention "
                + "probabilities in training, which is not implemented; set it to 0.0 to train")
        }
        let n = batch * length
        let ids = try uploadTokenIDs(tokens.joined(), backend: backend)
        var x = try backend.empty([n, config.hiddenSize])
        try backend.embedding(EmbeddingLookup(table: embedTokens, indices: ids, output: x))
        // The last step's activations go before this step's are made: held to the end, they would double the peak.
        self.saved = nil
        var saved = Saved(batch: batch, length: length, ids: ids, segments: segments)
        let checkpointing = gradientCheckpointing && cache == nil
        for layer in layers {
            if checkpointing { saved.checkpoints.append(BlockCheckpoint(input: x, modules: layer.modules)) }
            let (next, activations) = try forward(layer, x, batch: batch, length: length, cache: cache, segments: segments)
            if checkpointing {
                layer.modules.forEach { $0.releaseSavedActivations() }  // `activations` go now; backward recomputes them
            } else {
                saved.layers.append(activations)
            }
            x = next
        }
        cache?.advance(by: length)
        let (h, rstd) = try rmsNorm(x, norm)
        let logits = try headLogits(h, head: lmHead, batch: batch, length: length, positions: positions, cached: cache != nil)
        saved.final = (x, h, rstd)
        self.saved = cache == nil ? saved : nil  // a cached step is for generation, not backward
        return logits
    }

    /// RMSNorm over the last axis of `x` (rows of `gamma.count`): the output and its per-row 1/rms.
    func rmsNorm(_ x: Tensor, _ gamma: Tensor) throws -> (Tensor, Tensor) {
        let (y, rstd) = (try backend.empty(x.shape), try backend.empty([x.count / gamma.count]))
        try backend.rmsNorm(RMSNorm(x: x, gamma: gamma, y: y, rstd: rstd, epsilon: Float(config.rmsNormEpsilon)))
        return (y, rstd)
    }

    /// x + attention(RMSNorm(x)), then + mlp(RMSNorm(·)); packed rows (`segments`) attend within their examples at
    /// their own positions.
    func forward(_ layer: Layer, _ x: Tensor, batch: Int, length t: Int,
                 cache: KVCache?, segments: DeviceSegments?) throws -> (Tensor, LayerActivations) {
        let index = layer.index
        let (d, heads, kvHeads) = (config.headDim, config.heads, config.kvHeads)
        let n = batch * t
        let start = cache?.length ?? 0
        let (h1, rstd1) = try rmsNorm(x, layer.inputNorm)
        var (q, k) = (try layer.q.forward(h1), try layer.k.forward(h1))
        let v = try layer.v.forward(h1)
        var (qPre, qRstd, kPre, kRstd): (Tensor?, Tensor?, Tensor?, Tensor?) = (nil, nil, nil, nil)
        if let qNorm = layer.qNorm, let kNorm = layer.kNorm {  // Qwen3: each head's q and k normalized before RoPE
            (qPre, kPre) = (q, k)
            let (qn, qr) = try rmsNorm(q.reshaped([n * heads, d]), qNorm)
            let (kn, kr) = try rmsNorm(k.reshaped([n * kvHeads, d]), kNorm)
            (q, k, qRstd, kRstd) = (try qn.reshaped([n, heads * d]), try kn.reshaped([n, kvHeads * d]), qr, kr)
        }
        try rope(q, heads: heads, length: t, start: start, positions: segments?.positions, inverse: false)
        try rope(k, heads: kvHeads, length: t, start: start, positions: segments?.positions, inverse: false)
        var keys = HeadOperand(k, ld: kvHeads * d, sequenceStride: t * kvHeads * d, headStride: d)
        var values = HeadOperand(v, ld: kvHeads * d, sequenceStride: t * kvHeads * d, headStride: d)
        var tk = t
        if let cache {
            for (source, isValues) in [(k, false), (v, true)] {
                try backend.blockCopy(BlockCopy(rows: t, cols: kvHeads * d, batch: batch,
                                                from: GEMMOperand(source, ld: kvHeads * d, batchStride: t * kvHeads * d),
                                                to: cache.destination(layer: index, values: isValues)))
            }
            tk = cache.length + t
            (keys, values) = (cache.heads(layer: index, values: false, headDim: d), cache.heads(layer: index, values: true, headDim: d))
        }
        let shape = try attentionShape(batch: batch, length: t, keys: tk, layer: index)
        let probabilities = try backend.empty(shape.probabilityShape)
        let context = try backend.empty([n, heads * d])
        try backend.attention(Attention(shape, query: headView(q, length: t), key: keys, value: values,
                                        probabilities: probabilities, context: headView(context, length: t),
                                        segmentStarts: segments?.starts))
        let middle = try residual(x, try layer.o.forward(context))
        let (h2, rstd2) = try rmsNorm(middle, layer.postAttentionNorm)
        let (gate, up) = (try layer.gate.forward(h2), try layer.up.forward(h2))
        let activated = try backend.empty(gate.shape)
        try backend.swiglu(SwiGLU(gate: gate, up: up, y: activated))
        let output = try residual(middle, try layer.down.forward(activated))
        return (output, LayerActivations(input: x, rstd1: rstd1, qPre: qPre, qRstd: qRstd, kPre: kPre, kRstd: kRstd,
                                         q: q, k: k, v: v, probabilities: probabilities, middle: middle, rstd2: rstd2,
                                         gate: gate, up: up))
    }

    /// RoPE in place on `x` `[B·T, heads·D]` at positions `start + r % T`, or `positions` (packed rows); inverse: the
    /// backward's rotation by −angle.
    func rope(_ x: Tensor, heads: Int, length: Int, start: Int, positions: Tensor?, inverse: Bool) throws {
        try backend.rope(RoPE(input: x, output: x, heads: heads, headDim: config.headDim, sequenceLength: length,
                              start: start, cos: ropeCos, sin: ropeSin, inverse: inverse, positions: positions))
    }

    /// x + branch, written over the branch (a fresh projection output nothing else holds): one pass, no copy.
    private func residual(_ x: Tensor, _ branch: Tensor) throws -> Tensor {
        try backend.axpy(Axpy(alpha: 1, x: x, y: branch))
        return branch
    }

    /// Layer `layer`'s attention: scores scaled by 1/√D, its sliding window if it has one.
    func attentionShape(batch: Int, length t: Int, keys: Int, layer: Int) throws -> AttentionShape {
        try AttentionShape(sequences: batch, heads: config.heads, kvHeads: config.kvHeads, headDim: config.headDim,
                           queries: t, keys: keys, scale: 1 / Float(config.headDim).squareRoot(),
                           window: config.slidingWindow(layer: layer))
    }

    /// A `[N, heads·D]` tensor (q, k, v, the context and their gradients) per sequence and head.
    func headView(_ x: Tensor, length t: Int) -> HeadOperand {
        let width = x.shape[1]
        return HeadOperand(x, ld: width, sequenceStride: t * width, headStride: config.headDim)
    }
}
