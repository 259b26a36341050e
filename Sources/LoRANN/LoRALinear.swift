// LoRALinear: a frozen linear layer W0 (+ bias) with a trainable low-rank update, in PEFT's layout.
//   y = x·W0ᵀ + b + s·(x·Aᵀ)·Bᵀ,   A [r, in], B [out, r], s = alpha / r (rsLoRA: alpha / √r)
// x is [..., in] (leading axes are rows), y is [..., out]. W0 is [out, in] like nn.Linear, or [in, out] like
// GPT-2's Conv1D (PEFT's fan_in_fan_out). Backward gives dx, dA and dB; W0 and b never get a gradient.
import LoRARuntime

/// A linear layer with a LoRA adapter.
public final class LoRALinear {
    /// How the frozen weight is stored.
    public enum WeightLayout: Sendable {
        /// `[out, in]`, as `torch.nn.Linear`.
        case outIn
        /// `[in, out]`, as GPT-2's `Conv1D` (PEFT: `fan_in_fan_out = true`).
        case inOut
    }

    /// How A starts (B always starts at zero, so a new layer reproduces the base exactly).
    public enum Initialization: Sendable {
        /// PEFT's default: `kaiming_uniform_(a = √5)`, i.e. uniform in ±1/√in.
        case kaimingUniform
        /// PEFT's `init_lora_weights = "gaussian"`: normal with standard deviation 1/r.
        case gaussian
    }

    public let backend: any Backend
    /// The frozen base weight (see `layout`).
    public let weight: Tensor
    /// The frozen bias `[out]`, if any.
    public let bias: Tensor?
    public let layout: WeightLayout
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
    /// Whether `s·B·A` is currently folded into `weight`.
    public private(set) var isMerged = false

    private var savedInput: Tensor?
    private var savedU: Tensor?

    /// - Parameters:
    ///   - weight: the frozen base weight, `[out, in]` or `[in, out]` as `layout` says.
    ///   - rank: r, between 1 and min(in, out).
    ///   - seed: seeds A's initialization.
    public init(weight: Tensor, bias: Tensor? = nil, layout: WeightLayout = .outIn, rank: Int, alpha: Float,
                useRSLoRA: Bool = false, initialization: Initialization = .kaimingUniform, seed: UInt64 = 0) throws {
        guard weight.rank == 2 else {
            throw LoRAError.shapeMismatch("LoRALinear: weight must be a matrix, got \(describe(weight.shape))")
        }
        let (inF, outF) = layout == .outIn ? (weight.shape[1], weight.shape[0]) : (weight.shape[0], weight.shape[1])
        guard rank >= 1, rank <= min(inF, outF) else {
            throw LoRAError.invalidArgument(
                "LoRA rank \(rank) must be between 1 and min(in \(inF), out \(outF)) = \(min(inF, outF))")
        }
        guard alpha.isFinite else { throw LoRAError.invalidArgument("LoRA alpha \(alpha) must be finite") }
        if let bias, bias.shape != [outF] {
            throw LoRAError.shapeMismatch("LoRALinear: bias is \(describe(bias.shape)) but the layer has \(outF) outputs")
        }
        let backend = weight.backend
        try backend.requireOwned("LoRALinear", weight, bias)
        (self.backend, self.weight, self.bias, self.layout) = (backend, weight, bias, layout)
        (inFeatures, outFeatures, self.rank, self.alpha) = (inF, outF, rank, alpha)
        scale = useRSLoRA ? alpha / Float(rank).squareRoot() : alpha / Float(rank)
        var generator = SeededGenerator(seed: seed)
        let a = switch initialization {
        case .kaimingUniform: generator.uniform(count: rank * inF, bound: 1 / Float(inF).squareRoot())
        case .gaussian: generator.normal(count: rank * inF, standardDeviation: 1 / Float(rank))
        }
        loraA = try backend.upload(a, shape: [rank, inF])
        loraB = try backend.zeros([outF, rank])
        gradA = try backend.zeros([rank, inF])
        gradB = try backend.zeros([outF, rank])
    }

    /// The trainable parameters and their gradients: only A and B, never the base weight.
    public var parameters: [(name: String, value: Tensor, gradient: Tensor)] {
        [("lora_A.weight", loraA, gradA), ("lora_B.weight", loraB, gradB)]
    }

    /// `y = x·W0ᵀ + b + s·(x·Aᵀ)·Bᵀ` for x `[..., in]`; y is `[..., out]`. Saves what `backward` needs.
    public func forward(_ x: Tensor) throws -> Tensor {
        guard x.shape.last == inFeatures else {
            throw LoRAError.shapeMismatch("LoRALinear: x is \(describe(x.shape)) but the layer takes \(inFeatures) inputs")
        }
        let rows = x.count / inFeatures
        let x2 = try x.reshaped([rows, inFeatures])
        let y = try backend.empty([rows, outFeatures])
        try backend.gemm(GEMM(a: x2, b: weight, c: y, transposeB: layout == .outIn))
        if let bias { try backend.addBias(BiasAdd(bias: bias, y: y)) }
        if !isMerged {
            let u = try backend.empty([rows, rank])
            try backend.loraProject(LoRAProjection(x: x2, a: loraA, b: loraB, scale: scale, y: y, u: u))
            savedU = u
        }
        savedInput = x2
        return try y.reshaped(Array(x.shape.dropLast()) + [outFeatures])
    }

    /// Given dy `[..., out]` for the last `forward`, adds dA and dB into `gradA`/`gradB` and returns dx `[..., in]`:
    /// ```
    /// g = dy·B            [N, r]
    /// dx = dy·W0 + s·g·A  [N, in]
    /// dA += s·gᵀ·x        [r, in]
    /// dB += s·dyᵀ·u       [out, r]
    /// ```
    public func backward(_ dy: Tensor) throws -> Tensor {
        guard !isMerged else { throw LoRAError.invalidState("LoRALinear: backward through a merged layer; unmerge first") }
        guard let x = savedInput, let u = savedU else {
            throw LoRAError.invalidState("LoRALinear: backward called before forward")
        }
        let rows = x.shape[0]
        guard dy.shape.last == outFeatures, dy.count == rows * outFeatures else {
            throw LoRAError.shapeMismatch("LoRALinear: dy is \(describe(dy.shape)) but forward produced \(rows) rows of \(outFeatures)")
        }
        let dy2 = try dy.reshaped([rows, outFeatures])
        let dx = try backend.empty([rows, inFeatures])
        try backend.gemm(GEMM(a: dy2, b: weight, c: dx, transposeB: layout == .inOut))
        let g = try backend.matmul(dy2, loraB)
        try backend.gemm(GEMM(a: g, b: loraA, c: dx, alpha: scale, beta: 1))
        try backend.gemm(GEMM(a: g, b: x, c: gradA, transposeA: true, alpha: scale, beta: 1))
        try backend.gemm(GEMM(a: dy2, b: u, c: gradB, transposeA: true, alpha: scale, beta: 1))
        return try dx.reshaped(Array(dy.shape.dropLast()) + [inFeatures])
    }

    /// Sets both gradients to zero.
    public func zeroGradients() throws {
        try backend.fill(gradA, with: 0)
        try backend.fill(gradB, with: 0)
    }

    /// Folds the adapter into the base weight: `W0 += s·B·A` (`[in, out]` layout: `W0 += s·(B·A)ᵀ`).
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
        switch layout {
        case .outIn: try backend.gemm(GEMM(a: loraB, b: loraA, c: weight, alpha: sign * scale, beta: 1))
        case .inOut:
            try backend.gemm(GEMM(a: loraA, b: loraB, c: weight, transposeA: true, transposeB: true,
                                  alpha: sign * scale, beta: 1))
        }
        savedInput = nil
        savedU = nil
    }
}
