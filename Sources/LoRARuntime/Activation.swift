// GPT-2's activation, `gelu_new` (the tanh approximation), and its gradient. Written as
// `x·σ(2u)` with `u = √(2/π)·(x + 0.044715·x³)`, which equals `0.5·x·(1 + tanh u)` and needs one exp.

/// `y = gelu(x)` elementwise. `y` may be `x`.
public struct GELU: BackendOp {
    public var owner: any Backend { x.backend }
    public let x: Tensor, y: Tensor

    public init(x: Tensor, y: Tensor) throws {
        try x.backend.requireOwned("gelu", x, y)
        guard x.count == y.count else {
            throw LoRAError.shapeMismatch("gelu: x \(describe(x.shape)) and y \(describe(y.shape)) differ in size")
        }
        (self.x, self.y) = (x, y)
    }
}

/// `dx = dy·gelu′(x)` elementwise (written, not accumulated). `dx` may be `dy`.
public struct GELUBackward: BackendOp {
    public var owner: any Backend { x.backend }
    public let x: Tensor, dy: Tensor, dx: Tensor

    public init(x: Tensor, dy: Tensor, dx: Tensor) throws {
        try x.backend.requireOwned("geluBackward", x, dy, dx)
        guard x.count == dy.count, x.count == dx.count else {
            throw LoRAError.shapeMismatch("geluBackward: x \(describe(x.shape)), dy \(describe(dy.shape)) and "
                + "dx \(describe(dx.shape)) differ in size")
        }
        (self.x, self.dy, self.dx) = (x, dy, dx)
    }
}

/// The constants of `gelu_new`, shared by every backend's code (the kernels repeat them).
public enum GELUConstants {
    /// √(2/π).
    public static let sqrtTwoOverPi: Float = 0.7978845608028654
    public static let cubic: Float = 0.044715
}
