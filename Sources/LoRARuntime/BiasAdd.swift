// Adding a bias vector to every row: y [..., n] += bias [n].

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
