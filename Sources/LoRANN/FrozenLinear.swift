// The frozen half of a linear layer: `y = x·Wᵀ + b` forward and `dx = dy·W` backward, whatever form W is stored
// in. `LoRALinear` and `LinearModule` multiply through this protocol only, so a new storage (NF4 in the QLoRA
// issue) is one more conformance, not a change to every layer. A frozen weight never gets a gradient.
import LoRARuntime

/// A frozen weight (and bias) that can multiply activations.
///
/// Shapes: x `[N, in]`, y `[N, out]`, dy `[N, out]`, dx `[N, in]`, all float32 and row-major.
public protocol FrozenLinear: AnyObject {
    var backend: any Backend { get }
    var inFeatures: Int { get }
    var outFeatures: Int { get }
    /// The frozen bias `[out]`, if any.
    var bias: Tensor? { get }

    /// `y = x·Wᵀ + b` (y is overwritten).
    func forward(_ x: Tensor, into y: Tensor) throws
    /// `dx = dy·W`, or `dx += dy·W` with `accumulate`.
    func inputGradient(_ dy: Tensor, into dx: Tensor, accumulate: Bool) throws
    /// `W += scale·B·A` for A `[r, in]`, B `[out, r]` (merging an adapter); throws where the storage cannot hold
    /// the sum exactly as a dense weight would.
    func addLowRank(a: Tensor, b: Tensor, scale: Float) throws
}

/// A dense weight in a tensor: `[out, in]` like `torch.nn.Linear`, or `[in, out]` like GPT-2's `Conv1D`.
public final class DenseLinear: FrozenLinear {
    /// How the weight is laid out.
    public enum Layout: Sendable {
        /// `[out, in]`, as `torch.nn.Linear`.
        case outIn
        /// `[in, out]`, as GPT-2's `Conv1D` (PEFT: `fan_in_fan_out = true`).
        case inOut
    }

    public let weight: Tensor
    public let bias: Tensor?
    public let layout: Layout
    public let inFeatures: Int, outFeatures: Int
    public var backend: any Backend { weight.backend }

    public init(weight: Tensor, bias: Tensor? = nil, layout: Layout = .outIn) throws {
        guard weight.rank == 2 else {
            throw LoRAError.shapeMismatch("linear layer: weight must be a matrix, got \(describe(weight.shape))")
        }
        (inFeatures, outFeatures) = layout == .outIn ? (weight.shape[1], weight.shape[0]) : (weight.shape[0], weight.shape[1])
        if let bias, bias.shape != [outFeatures] {
            throw LoRAError.shapeMismatch("linear layer: bias is \(describe(bias.shape)) but the layer has \(outFeatures) outputs")
        }
        try weight.backend.requireOwned("linear layer", weight, bias)
        (self.weight, self.bias, self.layout) = (weight, bias, layout)
    }

    public func forward(_ x: Tensor, into y: Tensor) throws {
        try backend.gemm(GEMM(a: x, b: weight, c: y, transposeB: layout == .outIn, bias: bias))
    }

    public func inputGradient(_ dy: Tensor, into dx: Tensor, accumulate: Bool) throws {
        try backend.gemm(GEMM(a: dy, b: weight, c: dx, transposeB: layout == .inOut, beta: accumulate ? 1 : 0))
    }

    /// A bf16/f16 weight is widened to float32, gets the product added there, and is rounded back (to nearest even),
    /// as PEFT merges into a half-precision weight: the sum is computed once, rounded once. A packed weight is
    /// packed again.
    public func addLowRank(a: Tensor, b: Tensor, scale: Float) throws {
        let packed = weight.packing != nil
        weight.packing = nil
        let target = weight.dtype == .float32 ? weight : try backend.converted(weight, to: .float32)
        switch layout {
        case .outIn: try backend.gemm(GEMM(a: b, b: a, c: target, alpha: scale, beta: 1))
        case .inOut: try backend.gemm(GEMM(a: a, b: b, c: target, transposeA: true, transposeB: true, alpha: scale, beta: 1))
        }
        if target !== weight { try backend.convert(Convert(source: target, destination: weight)) }
        if packed { try packForInference() }
    }

    /// Lays the weight out once for the backend's forward products (`Backend.packWeight`, a second copy of it), for
    /// generation, where every step reads every weight. Returns whether the backend packed it.
    @discardableResult
    public func packForInference() throws -> Bool {
        try backend.packWeight(weight, transposed: layout == .outIn)
    }
}
