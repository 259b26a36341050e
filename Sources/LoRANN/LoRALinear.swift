// LoRALinear: a frozen linear layer W0 (+ bias) with a trainable low-rank update, in PEFT's layout.
//   y = x·W0ᵀ + b + s·(x·Aᵀ)·Bᵀ,   A [r, in], B [out, r], s = alpha / r (rsLoRA: alpha / √r)
// x is [..., in] (leading axes are rows), y is [..., out]. W0 is any `FrozenLinear` (a dense weight in either
// layout today). Backward gives dx, dA and dB; W0 and b never get a gradient.
// With dropout p and `training` on, the low-rank path sees dropout(x) (PEFT's lora_dropout), the base path x.
import LoRARuntime

/// A linear layer with a LoRA adapter.
public final class LoRALinear {
    /// How A starts (B always starts at zero, so a new layer reproduces the base exactly).
    public enum Initialization: Sendable {
        /// PEFT's default: `kaiming_uniform_(a = √5)`, i.e. uniform in ±1/√in.
        case kaimingUniform
        /// PEFT's `init_lora_weights = "gaussian"`: normal with standard deviation 1/r.
        case gaussian
    }

    public let backend: any Backend
    /// The frozen base layer.
    public let base: any FrozenLinear
    public let inFeatures: Int, outFeatures: Int, rank: Int
    public let alpha: Float
    /// The factor on the low-rank path: `alpha / rank`, or `alpha / √rank` with rsLoRA.
    public let scale: Float
    /// Trainable `[rank, in]`.
    public let loraA: Tensor
    /// Trainable `[out, rank]`.
    public let loraB: Tensor
    /// Gradients of `loraA` and `loraB`; `backward` adds to them, `zeroGradients` clears them.
    public let gradA: Tensor, gradB: Tensor
    /// Whether `s·B·A` is currently folded into the base weight.
    public private(set) var isMerged = false
    /// PEFT's `lora_dropout`: the probability of dropping an input of the low-rank path while `training`.
    public let dropout: Float
    /// Training mode: dropout applies (PyTorch's `model.train()`); off by default, as for inference.
    public var training = false

    /// What the low-rank path saw in the last forward: x, or dropout(x).
    private var savedLoRAInput: Tensor?
    private var savedU: Tensor?
    /// The seed of the last forward's dropout mask (nil when none applied): `Dropout` with it reproduces the mask.
    public private(set) var lastDropoutSeed: UInt64?
    /// The seed the next forward's mask will use; advances each forward, and a checkpoint saves it.
    public var nextDropoutSeed: UInt64
    /// Rows of a larger batch before this forward's first row: the mask is that batch's, taken from row
    /// `dropoutRowOffset` on (a data-parallel rank sets it to its first row in the global batch, so its rows get the
    /// mask one process would give them). 0 by default.
    public var dropoutRowOffset = 0
    /// The mask index of the last forward's first dropped-out element (with `lastDropoutSeed`).
    private var lastDropoutOffset: UInt32 = 0

    /// The factor on the low-rank path: `alpha / r`, or `alpha / √r` with rsLoRA (PEFT's `scaling`).
    public static func scale(alpha: Float, rank: Int, useRSLoRA: Bool) -> Float {
        useRSLoRA ? alpha / Float(rank).squareRoot() : alpha / Float(rank)
    }

    /// A dense weight with an adapter: `weight` is `[out, in]` or `[in, out]` as `layout` says.
    public convenience init(weight: Tensor, bias: Tensor? = nil, layout: DenseLinear.Layout = .outIn, rank: Int, alpha: Float,
                            useRSLoRA: Bool = false, initialization: Initialization = .kaimingUniform, dropout: Float = 0,
                            seed: UInt64 = 0) throws {
        try self.init(base: DenseLinear(weight: weight, bias: bias, layout: layout), rank: rank, alpha: alpha,
                      useRSLoRA: useRSLoRA, initialization: initialization, dropout: dropout, seed: seed)
    }

    /// - Parameters:
    ///   - base: the frozen layer the adapter adds to.
    ///   - rank: r, between 1 and min(in, out).
    ///   - dropout: PEFT's `lora_dropout`, applied to the low-rank path's input while `training`.
    ///   - seed: seeds A's initialization and the dropout masks.
    public init(base: any FrozenLinear, rank: Int, alpha: Float, useRSLoRA: Bool = false,
                initialization: Initialization = .kaimingUniform, dropout: Float = 0, seed: UInt64 = 0) throws {
        let (inF, outF) = (base.inFeatures, base.outFeatures)
        guard rank >= 1, rank <= min(inF, outF) else {
            throw LoRAError.invalidArgument(
                "LoRA rank \(rank) must be between 1 and min(in \(inF), out \(outF)) = \(min(inF, outF))")
        }
        guard alpha.isFinite else { throw LoRAError.invalidArgument("LoRA alpha \(alpha) must be finite") }
        guard dropout >= 0, dropout < 1 else { throw LoRAError.invalidArgument("LoRA dropout \(dropout) must lie in [0, 1)") }
        let backend = base.backend
        (self.backend, self.base) = (backend, base)
        (inFeatures, outFeatures, self.rank, self.alpha) = (inF, outF, rank, alpha)
        scale = Self.scale(alpha: alpha, rank: rank, useRSLoRA: useRSLoRA)
        self.dropout = dropout
        var generator = SeededGenerator(seed: seed)
        let a = switch initialization {
        case .kaimingUniform: generator.uniform(count: rank * inF, bound: 1 / Float(inF).squareRoot())
        case .gaussian: generator.normal(count: rank * inF, standardDeviation: 1 / Float(rank))
        }
        loraA = try backend.upload(a, shape: [rank, inF])
        loraB = try backend.zeros([outF, rank])
        gradA = try backend.zeros([rank, inF])
        gradB = try backend.zeros([outF, rank])
        nextDropoutSeed = generator.next()
    }

    /// The trainable parameters and their gradients: only A and B, never the base weight.
    public var parameters: [(name: String, value: Tensor, gradient: Tensor)] {
        [("lora_A.weight", loraA, gradA), ("lora_B.weight", loraB, gradB)]
    }

    /// The seed of the mask after the one `seed` gave (an LCG step).
    static func seed(after seed: UInt64) -> UInt64 { seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407 }

    /// Takes the dropout seed a forward would have used, without a forward: a data-parallel rank with no rows in a
    /// step stays on the seeds of the ranks that ran one.
    public func skipDropoutMask() {
        if training && dropout > 0 && !isMerged { nextDropoutSeed = Self.seed(after: nextDropoutSeed) }
    }

    /// `y = x·W0ᵀ + b + s·(x·Aᵀ)·Bᵀ` for x `[..., in]`; y is `[..., out]`. Saves what `backward` needs.
    public func forward(_ x: Tensor) throws -> Tensor {
        guard x.shape.last == inFeatures else {
            throw LoRAError.shapeMismatch("LoRALinear: x is \(describe(x.shape)) but the layer takes \(inFeatures) inputs")
        }
        let rows = x.count / inFeatures
        let x2 = try x.reshaped([rows, inFeatures])
        let y = try backend.empty([rows, outFeatures])
        try base.forward(x2, into: y)
        (savedLoRAInput, savedU, lastDropoutSeed) = (nil, nil, nil)
        if !isMerged {
            var input = x2
            if training && dropout > 0 {
                input = try backend.empty(x2.shape)
                lastDropoutOffset = UInt32(truncatingIfNeeded: dropoutRowOffset &* inFeatures)
                try backend.dropout(Dropout(x: x2, y: input, probability: dropout, seed: nextDropoutSeed, indexOffset: lastDropoutOffset))
                lastDropoutSeed = nextDropoutSeed
                nextDropoutSeed = Self.seed(after: nextDropoutSeed)
            }
            let u = try backend.empty([rows, rank])
            try backend.loraProject(LoRAProjection(x: input, a: loraA, b: loraB, scale: scale, y: y, u: u))
            (savedLoRAInput, savedU) = (input, u)
        }
        return try y.reshaped(Array(x.shape.dropLast()) + [outFeatures])
    }

    /// Given dy `[..., out]` for the last `forward`, adds dA and dB into `gradA`/`gradB` and returns dx `[..., in]`:
    /// ```
    /// g = dy·B                     [N, r]
    /// dx = dy·W0 + D(s·g·A)        [N, in]   D: the forward's dropout mask and scale (identity without dropout)
    /// dA += s·gᵀ·D(x)              [r, in]
    /// dB += s·dyᵀ·u                [out, r]
    /// ```
    public func backward(_ dy: Tensor) throws -> Tensor {
        let rows = dy.count / outFeatures
        let dx = try backend.empty([rows, inFeatures])
        try backward(dy, into: dx, accumulate: false)
        return try dx.reshaped(Array(dy.shape.dropLast()) + [inFeatures])
    }

    /// `backward` writing dx `[N, in]` into `dx`, or adding it there with `accumulate` (a layer whose input feeds
    /// several projections: q, k and v, or gate and up).
    public func backward(_ dy: Tensor, into dx: Tensor, accumulate: Bool) throws {
        let (dy2, g) = try self.accumulate(dy)
        guard dx.count == dy2.shape[0] * inFeatures else {
            throw LoRAError.shapeMismatch("LoRALinear: dx is \(describe(dx.shape)) for \(dy2.shape[0]) rows of \(inFeatures)")
        }
        let dx = try dx.reshaped([dy2.shape[0], inFeatures])
        try base.inputGradient(dy2, into: dx, accumulate: accumulate)
        if let seed = lastDropoutSeed {
            // Dropout's backward is the same mask and scale applied to the gradient.
            let low = try backend.matmul(g, loraA, alpha: scale)
            try backend.dropout(Dropout(x: low, y: low, probability: dropout, seed: seed, indexOffset: lastDropoutOffset))
            try backend.axpy(Axpy(alpha: 1, x: low, y: dx))
        } else {
            try backend.gemm(GEMM(a: g, b: loraA, c: dx, alpha: scale, beta: 1))
        }
    }

    /// `backward` without dx, for a layer whose input needs no gradient (it comes from frozen weights alone):
    /// skips dx's GEMMs, the largest part of the layer's backward.
    public func accumulateGradients(_ dy: Tensor) throws { _ = try accumulate(dy) }

    /// dA and dB for dy; returns dy as `[N, out]` and g.
    private func accumulate(_ dy: Tensor) throws -> (dy: Tensor, g: Tensor) {
        guard !isMerged else { throw LoRAError.invalidState("LoRALinear: backward through a merged layer; unmerge first") }
        guard let x = savedLoRAInput, let u = savedU else {
            throw LoRAError.invalidState("LoRALinear: backward called before forward")
        }
        let rows = x.shape[0]
        guard dy.shape.last == outFeatures, dy.count == rows * outFeatures else {
            throw LoRAError.shapeMismatch("LoRALinear: dy is \(describe(dy.shape)) but forward produced \(rows) rows of \(outFeatures)")
        }
        let dy2 = try dy.reshaped([rows, outFeatures])
        let g = try backend.matmul(dy2, loraB)
        try backend.gemm(GEMM(a: g, b: x, c: gradA, transposeA: true, alpha: scale, beta: 1))
        try backend.gemm(GEMM(a: dy2, b: u, c: gradB, transposeA: true, alpha: scale, beta: 1))
        return (dy2, g)
    }

    /// Drops what the last forward saved for backward (gradient checkpointing frees a block's activations this way
    /// and recomputes them before its backward). `nextDropoutSeed` is untouched.
    public func releaseSavedActivations() { (savedLoRAInput, savedU, lastDropoutSeed) = (nil, nil, nil) }

    /// Sets both gradients to zero.
    public func zeroGradients() throws {
        try backend.fill(gradA, with: 0)
        try backend.fill(gradB, with: 0)
    }

    /// Folds the adapter into the base weight: `W0 += s·B·A`.
    /// Forward then runs one GEMM, with the same result.
    public func merge() throws {
        guard !isMerged else { throw LoRAError.invalidState("LoRALinear: already merged") }
        try addLowRank(sign: 1)
        isMerged = true
    }

    /// Takes the adapter back out of the base weight: `W0 -= s·B·A`.
    public func unmerge() throws {
        guard isMerged else { throw LoRAError.invalidState("LoRALinear: not merged") }
        try addLowRank(sign: -1)
        isMerged = false
    }

    private func addLowRank(sign: Float) throws {
        try base.addLowRank(a: loraA, b: loraB, scale: sign * scale)
        savedLoRAInput = nil
        savedU = nil
    }
}
