// Whole-tensor reductions: the sum (a mean loss) and the sum of squares (a gradient norm).
// Backends add in a fixed order that depends only on the element count, so results repeat run to run.

/// `result = Σ f(x)` over every element of `x`, or `result += Σ f(x)` when `accumulate`
/// (a gradient norm over many tensors). `result` holds one element.
public struct Reduction: BackendOp {
    public enum Kind: Sendable, Equatable {
        /// Σ x.
        case sum
        /// Σ x², for norms.
        case sumOfSquares
    }

    public var owner: any Backend { x.backend }
    public let x: Tensor, result: Tensor
    public let kind: Kind
    public let accumulate: Bool

    public init(_ kind: Kind, of x: Tensor, into result: Tensor, accumulate: Bool = false) throws {
        try x.backend.requireOwned("reduce", x, result)
        try requireFloat32("reduce", ("x", x), ("result", result))
        guard result.count == 1 else {
            throw LoRAError.shapeMismatch("reduce: result is \(describe(result.shape)); it must hold one element")
        }
        guard result.storage !== x.storage else {
            throw LoRAError.invalidArgument("reduce: result cannot share storage with x")
        }
        (self.kind, self.x, self.result, self.accumulate) = (kind, x, result, accumulate)
    }
}
