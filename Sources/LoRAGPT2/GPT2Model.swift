// GPT-2 (the language model: transformer + tied LM head) on any backend, built from the runtime's ops, with
// LoRA adapters on the modules a LoRAConfig selects. Forward saves what backward needs; backward gives
// gradients to the LoRA parameters only (frozen weights pass dx through and get none). Packed rows
// (`forward(_:segments:)`) look up each token's position within its example and attend only within it.
//
// Shapes: B sequences of T tokens, N = B·T rows, C = width, H heads of D = C/H, V = vocab.
// Dtypes: wte, wpe, lm_head and the projection weights as loaded (float32, bfloat16 or float16: the embedding
// lookups and GEMMs widen them as they read); layer norm parameters, biases and every activation float32.
import Foundation
import LoRAAdapters
import LoRAFormats
import LoRAModels
import LoRANN
import LoRARuntime

/// A GPT-2 language model on one backend.
public final class GPT2Model: LanguageModel {
    public let config: GPT2Config
    public let backend: any Backend
    /// How the 4-bit projections were quantized; nil when none are.
    public let quantization: NF4Options?
    let wte: Tensor, wpe: Tensor, lnF: (gamma: Tensor, beta: Tensor)
    /// The output projection `[V, C]`: `wte` itself unless the checkpoint has its own `lm_head.weight`.
    let lmHead: Tensor
    let blocks: [Block]
    public var loraConfig: LoRAConfig?
    public let adapterSlots = AdapterSlots()
    public var training = false { didSet { propagateTraining() } }
    public var gradientCheckpointing = false
    var saved: Saved?

    public var modelType: String { "gpt2" }
    public var vocabularySize: Int { config.vocabSize }
    public var maxPositions: Int { config.positions }
    public var cacheGeometry: KVCache.Geometry { KVCache.Geometry(layers: config.layers, width: config.width) }
    /// GPT-2 ends at `<|endoftext|>`, which its tokenizer names (config.json's eos id is often a stale default).
    public var endOfSequenceTokens: Set<Int> { [] }
    public var defaultLoRATargets: LoRAConfig.Targets { LoRAConfig.attentionTargets }

    final class Block {
        let ln1: (gamma: Tensor, beta: Tensor), ln2: (gamma: Tensor, beta: Tensor)
        let attention: LinearModule, attentionOut: LinearModule, fc: LinearModule, mlpOut: LinearModule

        init(_ i: Int, _ weights: GPT2Weights) throws {
            let p = "h.\(i)."
            func norm(_ name: String) throws -> (Tensor, Tensor) {
                (try weights.float32(p + name + ".weight"), try weights.float32(p + name + ".bias"))
            }
            (ln1, ln2) = (try norm("ln_1"), try norm("ln_2"))
            func projection(_ module: String) throws -> LinearModule {
                try weights.projection(p + module, name: "transformer." + p + module)
            }
            (attention, attentionOut) = (try projection("attn.c_attn"), try projection("attn.c_proj"))
            (fc, mlpOut) = (try projection("mlp.c_fc"), try projection("mlp.c_proj"))
        }

        var projections: [LinearModule] { [attention, attentionOut, fc, mlpOut] }
    }

    /// Gradients of every weight in full fine-tuning (the projections hold their own); nil when frozen.
    var fullGradients: FullGradients?

    struct FullGradients {
        let wte: Tensor, wpe: Tensor, lnF: (gamma: Tensor, beta: Tensor)
        /// lm_head's own, when it is not tied to wte.
        let lmHead: Tensor?
        let norms: [(ln1: (gamma: Tensor, beta: Tensor), ln2: (gamma: Tensor, beta: Tensor))]
    }

    /// What one forward keeps for backward.
    struct Saved {
        let batch: Int, length: Int
        let ids: Tensor, positions: Tensor
        /// Packed rows' segment starts `[B, T]` (nil: unpacked).
        let segmentStarts: Tensor?
        /// Every block's activations, or with gradient checkpointing none of them: `checkpoints` instead.
        var layers: [LayerActivations] = []
        /// With gradient checkpointing: every block's input, from which backward recomputes its activations.
        var checkpoints: [BlockCheckpoint] = []
        var final: (x: Tensor, h: Tensor, mean: Tensor, rstd: Tensor)?
    }

    struct LayerActivations {
        let input: Tensor, mean1: Tensor, rstd1: Tensor, qkv: Tensor, probabilities: Tensor
        let middle: Tensor, mean2: Tensor, rstd2: Tensor, preActivation: Tensor
    }

    /// Loads a Hugging Face GPT-2 folder (config.json, model.safetensors or shards with an index) onto `backend`,
    /// the matrices in the file's dtype or `options.dtype`.
    public convenience init(folder: String, backend: any Backend, options: ModelLoadOptions = ModelLoadOptions()) throws {
        try self.init(weights: try GPT2Weights.load(folder: folder, backend: backend, options: options))
    }

    /// A model of `config` with random float32 weights, initialized as transformers initializes GPT-2 (training
    /// from scratch).
    public convenience init(config: GPT2Config, seed: UInt64, backend: any Backend, options: ModelLoadOptions = ModelLoadOptions()) throws {
        try self.init(weights: GPT2Weights.random(config, seed: seed, backend: backend, options: options))
    }

    /// Uploads tensor by tensor, so at most one tensor is ever converted on the host.
    init(weights: GPT2Weights) throws {
        (config, backend, quantization) = (weights.config, weights.backend, weights.quantization)
        (wte, wpe) = (try weights.tensor("wte.weight"), try weights.tensor("wpe.weight"))
        lnF = (try weights.float32("ln_f.weight"), try weights.float32("ln_f.bias"))
        lmHead = weights.hasTensor("lm_head.weight") ? try weights.tensor("lm_head.weight") : wte
        blocks = try (0..<config.layers).map { try Block($0, weights) }
    }

    /// Every linear module, by PEFT's name (`transformer.h.N.attn.c_attn`, ...).
    public var linearModules: [LinearModule] { blocks.flatMap(\.projections) }
    public var outputWeight: Tensor { lmHead }

    // MARK: - Forward

    public func forward(_ tokens: [[Int]], cache: KVCache?, segments: DeviceSegments?, logits logitPositions: LogitPositions) throws -> Tensor {
        // Ragged rows (a cache and segments) have their own positions; the cache's columns are not positions.
        let (batch, length) = try checkTokens(tokens, start: segments == nil ? cache?.length ?? 0 : 0)
        let n = batch * length
        let start = cache?.length ?? 0
        let ids = try uploadTokenIDs(tokens.joined(), backend: backend)
        let positions = try segments?.positions ?? uploadTokenIDs((0..<n).map { start + $0 % length }, backend: backend)
        var x = try backend.empty([n, config.width])
        try backend.embedding(EmbeddingLookup(table: wte, indices: ids, output: x))
        try backend.embedding(EmbeddingLookup(table: wpe, indices: positions, output: x, accumulate: true))
        // The last step's activations go before this step's are made: held to the end, they would double the peak.
        self.saved = nil
        var saved = Saved(batch: batch, length: length, ids: ids, positions: positions, segmentStarts: segments?.starts)
        let checkpointing = gradientCheckpointing && cache == nil
        for (index, block) in blocks.enumerated() {
            if checkpointing { saved.checkpoints.append(BlockCheckpoint(input: x, modules: block.projections)) }
            let (next, layer) = try forward(block, x, batch: batch, length: length, cache: cache.map { ($0, index) },
                                            segmentStarts: segments?.starts)
            if checkpointing {
                block.projections.forEach { $0.releaseSavedActivations() }  // `layer` goes now; backward recomputes it
            } else {
                saved.layers.append(layer)
            }
            x = next
        }
        cache?.advance(by: length)
        let (h, mean, rstd) = try layerNorm(x, lnF)
        let logits = try headLogits(h, head: lmHead, batch: batch, length: length, positions: logitPositions, cached: cache != nil)
        saved.final = (x, h, mean, rstd)
        self.saved = cache == nil ? saved : nil  // a cached step is for generation, not backward
        return logits
    }

    private func layerNorm(_ x: Tensor, _ p: (gamma: Tensor, beta: Tensor)) throws -> (Tensor, Tensor, Tensor) {
        let rows = x.shape[0]
        let (y, mean, rstd) = (try backend.empty(x.shape), try backend.empty([rows]), try backend.empty([rows]))
        try backend.layerNorm(LayerNorm(x: x, gamma: p.gamma, beta: p.beta, y: y, mean: mean, rstd: rstd,
                                        epsilon: config.layerNormEpsilon))
        return (y, mean, rstd)
    }

    /// x + attn(ln_1(x)), then + mlp(ln_2(·)); packed rows' tokens attend from their `segmentStarts` on.
    func forward(_ block: Block, _ x: Tensor, batch: Int, length: Int,
                 cache: (KVCache, Int)?, segmentStarts: Tensor?) throws -> (Tensor, LayerActivations) {
        let (h1, mean1, rstd1) = try layerNorm(x, block.ln1)
        let qkv = try block.attention.forward(h1)
        let (probabilities, context) = try attention(qkv, batch: batch, length: length, cache: cache, segmentStarts: segmentStarts)
        let middle = try residual(x, try block.attentionOut.forward(context))
        let (h2, mean2, rstd2) = try layerNorm(middle, block.ln2)
        let preActivation = try block.fc.forward(h2)
        let activated = try backend.empty(preActivation.shape)
        try backend.gelu(GELU(x: preActivation, y: activated))
        let output = try residual(middle, try block.mlpOut.forward(activated))
        return (output, LayerActivations(input: x, mean1: mean1, rstd1: rstd1, qkv: qkv, probabilities: probabilities,
                                         middle: middle, mean2: mean2, rstd2: rstd2, preActivation: preActivation))
    }

    /// x + branch, written over the branch (a fresh projection output nothing else holds): one pass, no copy.
    private func residual(_ x: Tensor, _ branch: Tensor) throws -> Tensor {
        try backend.axpy(Axpy(alpha: 1, x: x, y: branch))
        return branch
    }

    var attentionScale: Float { config.scaleAttentionWeights ? 1 / Float(config.headDim).squareRoot() : 1 }

    /// Causal self-attention over qkv `[N, 3C]` (q, k, v side by side, heads within each): returns the
    /// probabilities `[B, H, T, Tk]` and the context `[N, C]` (heads side by side). Without a cache Tk = T and the
    /// keys and values are qkv's; with one, this step's keys and values are appended to the layer's cache first and
    /// Tk counts every cached position (the mask lets query i see keys up to its own position).
    private func attention(_ qkv: Tensor, batch: Int, length t: Int, cache: (KVCache, Int)?,
                           segmentStarts: Tensor?) throws -> (Tensor, Tensor) {
        let c = config.width
        var (keys, values) = (qkvHeads(qkv, part: 1, length: t), qkvHeads(qkv, part: 2, length: t))
        var tk = t
        if let (cache, layer) = cache {
            for (part, isValues) in [(1, false), (2, true)] {
                try backend.blockCopy(BlockCopy(rows: t, cols: c, batch: batch, from: GEMMOperand(qkv, offset: part * c, ld: 3 * c, batchStride: t * 3 * c),
                                                to: cache.destination(layer: layer, values: isValues)))
            }
            tk = cache.length + t
            keys = cache.heads(layer: layer, values: false, headDim: config.headDim)
            values = cache.heads(layer: layer, values: true, headDim: config.headDim)
        }
        let shape = try attentionShape(batch: batch, length: t, keys: tk)
        let probabilities = try backend.empty(shape.probabilityShape)
        let context = try backend.empty([batch * t, c])
        try backend.attention(Attention(shape, query: qkvHeads(qkv, part: 0, length: t), key: keys, value: values,
                                        probabilities: probabilities, context: contextHeads(context, length: t),
                                        segmentStarts: segmentStarts))
        return (probabilities, context)
    }

    func attentionShape(batch: Int, length t: Int, keys: Int) throws -> AttentionShape {
        try AttentionShape(sequences: batch, heads: config.heads, headDim: config.headDim, queries: t, keys: keys,
                           scale: attentionScale)
    }

    /// q (part 0), k (1) or v (2) of a `[N, 3C]` tensor, per sequence and head.
    func qkvHeads(_ x: Tensor, part: Int, length t: Int) -> HeadOperand {
        let c = config.width
        return HeadOperand(x, offset: part * c, ld: 3 * c, sequenceStride: t * 3 * c, headStride: config.headDim)
    }

    /// A `[N, C]` tensor with the heads side by side (the context and its gradient), per sequence and head.
    func contextHeads(_ x: Tensor, length t: Int) -> HeadOperand {
        HeadOperand(x, ld: config.width, sequenceStride: t * config.width, headStride: config.headDim)
    }
}
