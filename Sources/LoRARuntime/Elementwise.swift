// Elementwise ops with a validated description: a bias added to every row, and y += alpha·x.

/// `y[row, :] += bias` for every row of `y` (its last axis has `bias.count` entries).
public struct BiasAdd: BackendOp {
    public var owner: any Backend { y.backend }
    public let bias: Tensor, y: Tensor
    public let rows: Int, cols: Int

    public init(bias: Tensor, y: Tensor) throws {
        try y.backend.requireOwned("addBias", bias, y)
        guard bias.rank == 1, y.shape.last == bias.count else {
            throw LoRAError.shapeMismatch("addBias: bias \(describe(bias.shape)) does not fit y \(describe(y.shape))")
        }
        (self.bias, self.y, cols) = (bias, y, bias.count)
        rows = y.count / cols
    }
}

/// `y += alpha·x` elementwise (x and y have the same element count). For SGD steps, residuals, scaling.
public struct Axpy: BackendOp {
    public var owner: any Backend { y.backend }
    public let alpha: Float
    public let x: Tensor, y: Tensor

    public init(alpha: Float, x: Tensor, y: Tensor) throws {
        try y.backend.requireOwned("axpy", x, y)
        guard x.count == y.count else {
            throw LoRAError.shapeMismatch("axpy: x \(describe(x.shape)) and y \(describe(y.shape)) differ in size")
        }
        guard alpha.isFinite else { throw LoRAError.invalidArgument("axpy: alpha \(alpha) must be finite") }
        (self.alpha, self.x, self.y) = (alpha, x, y)
    }
}
