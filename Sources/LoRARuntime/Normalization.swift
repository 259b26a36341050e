// Layer normalization over the last axis and its gradient, as PyTorch's nn.LayerNorm computes them:
// biased variance, epsilon inside the square root; and RMS normalization (Llama's LlamaRMSNorm: no mean, no bias).
// Layout: x [..., cols], rows = count / cols.

/// `y = (x − mean)·rstd·gamma + beta` per row, `rstd = 1/√(var + epsilon)`.
///
/// `mean` and `rstd` ([rows] each, both or neither) receive the row statistics the backward pass needs.
/// `y` may be `x` (in place).
public struct LayerNorm: BackendOp {
    public var owner: any Backend { x.backend }
    public let x: Tensor, gamma: Tensor, beta: Tensor, y: Tensor
    public let mean: Tensor?, rstd: Tensor?
    public let epsilon: Float
    public let rows: Int, cols: Int

    public init(x: Tensor, gamma: Tensor, beta: Tensor, y: Tensor, mean: Tensor? = nil, rstd: Tensor? = nil,
                epsilon: Float = 1e-5) throws {
        try x.backend.requireOwned("layerNorm", x, gamma, beta, y, mean, rstd)
        try requireFloat32("layerNorm", ("x", x), ("gamma", gamma), ("beta", beta), ("y", y), ("mean", mean), ("rstd", rstd))
        let cols = x.shape[x.rank - 1]
        guard gamma.count == cols, beta.count == cols, y.shape == x.shape else {
            throw LoRAError.shapeMismatch("layerNorm: x \(describe(x.shape)) needs gamma and beta of \(cols) and y of the "
                + "same shape; got gamma \(describe(gamma.shape)), beta \(describe(beta.shape)), y \(describe(y.shape))")
        }
        let rows = x.count / cols
        guard (mean == nil) == (rstd == nil) else {
            throw LoRAError.invalidArgument("layerNorm: mean and rstd are saved together; pass both or neither")
        }
        for case let (name, t?) in [("mean", mean), ("rstd", rstd)] where t.count != rows {
            throw LoRAError.shapeMismatch("layerNorm: \(name) is \(describe(t.shape)) but x has \(rows) rows")
        }
        guard epsilon.isFinite, epsilon > 0 else {
            throw LoRAError.invalidArgument("layerNorm: epsilon \(epsilon) must be positive and finite")
        }
        (self.x, self.gamma, self.beta, self.y, self.mean, self.rstd) = (x, gamma, beta, y, mean, rstd)
        (self.epsilon, self.rows, self.cols) = (epsilon, rows, cols)
    }
}

/// Gradient of `LayerNorm`, from the saved row statistics:
/// `x̂ = (x − mean)·rstd`, `g = dy·gamma`, `dx = rstd·(g − mean(g) − x̂·mean(g·x̂))`.
///
/// `dx` is written, or added to when `accumulate` (the residual stream's gradient). `dgamma += Σ_rows dy·x̂` and
/// `dbeta += Σ_rows dy` when given (gradients accumulate, as PyTorch's do); frozen norms pass nil.
/// `dx` may be `dy` unless `accumulate`.
public struct LayerNormBackward: BackendOp {
    public var owner: any Backend { x.backend }
    public let x: Tensor, gamma: Tensor, mean: Tensor, rstd: Tensor, dy: Tensor, dx: Tensor
    public let dgamma: Tensor?, dbeta: Tensor?
    public let accumulate: Bool
    public let rows: Int, cols: Int

    public init(x: Tensor, gamma: Tensor, mean: Tensor, rstd: Tensor, dy: Tensor, dx: Tensor,
                dgamma: Tensor? = nil, dbeta: Tensor? = nil, accumulate: Bool = false) throws {
        try x.backend.requireOwned("layerNormBackward", x, gamma, mean, rstd, dy, dx, dgamma, dbeta)
        try requireFloat32("layerNormBackward", ("x", x), ("gamma", gamma), ("mean", mean), ("rstd", rstd), ("dy", dy),
                           ("dx", dx), ("dgamma", dgamma), ("dbeta", dbeta))
        let cols = x.shape[x.rank - 1]
        let rows = x.count / cols
        guard dy.shape == x.shape, dx.shape == x.shape else {
            throw LoRAError.shapeMismatch("layerNormBackward: x \(describe(x.shape)), dy \(describe(dy.shape)) and "
                + "dx \(describe(dx.shape)) must match")
        }
        for case let (name, t?, n) in [("gamma", gamma, cols), ("dgamma", dgamma, cols), ("dbeta", dbeta, cols),
                                       ("mean", mean, rows), ("rstd", rstd, rows)] as [(String, Tensor?, Int)]
            where t.count != n {
            throw LoRAError.shapeMismatch("layerNormBackward: \(name) is \(describe(t.shape)) but should hold \(n)")
        }
        if accumulate && dx.storage === dy.storage {
            throw LoRAError.invalidArgument("layerNormBackward: dx cannot be dy when accumulating")
        }
        (self.x, self.gamma, self.mean, self.rstd, self.dy, self.dx) = (x, gamma, mean, rstd, dy, dx)
        (self.dgamma, self.dbeta, self.accumulate, self.rows, self.cols) = (dgamma, dbeta, accumulate, rows, cols)
    }
}

/// `y = x·rstd·gamma` per row, `rstd = 1/√(mean(x²) + epsilon)`: Hugging Face's LlamaRMSNorm in float32
/// (`weight · (x · rsqrt(x.pow(2).mean(-1) + eps))`). x is `[..., cols]` with `cols = gamma.count`.
///
/// `rstd` ([rows]) receives the row statistic the backward pass needs, when given. `y` may be `x` (in place).
public struct RMSNorm: BackendOp {
    public var owner: any Backend { x.backend }
    public let x: Tensor, gamma: Tensor, y: Tensor
    public let rstd: Tensor?
    public let epsilon: Float
    public let rows: Int, cols: Int

    public init(x: Tensor, gamma: Tensor, y: Tensor, rstd: Tensor? = nil, epsilon: Float) throws {
        try x.backend.requireOwned("rmsNorm", x, gamma, y, rstd)
        try requireFloat32("rmsNorm", ("x", x), ("gamma", gamma), ("y", y), ("rstd", rstd))
        let cols = x.shape[x.rank - 1]
        guard gamma.count == cols, y.shape == x.shape else {
            throw LoRAError.shapeMismatch("rmsNorm: x \(describe(x.shape)) needs gamma of \(cols) and y of the same shape; "
                + "got gamma \(describe(gamma.shape)), y \(describe(y.shape))")
        }
        let rows = x.count / cols
        if let rstd, rstd.count != rows {
            throw LoRAError.shapeMismatch("rmsNorm: rstd is \(describe(rstd.shape)) but x has \(rows) rows")
        }
        guard epsilon.isFinite, epsilon > 0 else {
            throw LoRAError.invalidArgument("rmsNorm: epsilon \(epsilon) must be positive and finite")
        }
        // y may be x; nothing else may overlap.
        try requireDisjoint("rmsNorm", outputs: [("y", y), ("rstd", rstd)], inputs: [("gamma", gamma)])
        try requireDisjoint("rmsNorm", outputs: [("rstd", rstd)], inputs: [("x", x)])
        (self.x, self.gamma, self.y, self.rstd, self.epsilon, self.rows, self.cols) = (x, gamma, y, rstd, epsilon, rows, cols)
    }
}

/// Gradient of `RMSNorm`, from the saved `rstd`: `x̂ = x·rstd`, `g = dy·gamma`, `dx = rstd·(g − x̂·mean(g·x̂))`.
///
/// `dx` is written, or added to when `accumulate` (the residual stream's gradient). `dgamma += Σ_rows dy·x̂` when
/// given (always accumulated, as PyTorch's gradients are); a frozen norm passes nil. `dx` may be `dy` unless
/// `accumulate`; it may not share memory with x, gamma or rstd.
public struct RMSNormBackward: BackendOp {
    public var owner: any Backend { x.backend }
    public let x: Tensor, gamma: Tensor, rstd: Tensor, dy: Tensor, dx: Tensor
    public let dgamma: Tensor?
    public let accumulate: Bool
    public let rows: Int, cols: Int

    public init(x: Tensor, gamma: Tensor, rstd: Tensor, dy: Tensor, dx: Tensor, dgamma: Tensor? = nil,
                accumulate: Bool = false) throws {
        try x.backend.requireOwned("rmsNormBackward", x, gamma, rstd, dy, dx, dgamma)
        try requireFloat32("rmsNormBackward", ("x", x), ("gamma", gamma), ("rstd", rstd), ("dy", dy), ("dx", dx),
                           ("dgamma", dgamma))
        let cols = x.shape[x.rank - 1]
        let rows = x.count / cols
        guard dy.shape == x.shape, dx.shape == x.shape else {
            throw LoRAError.shapeMismatch("rmsNormBackward: x \(describe(x.shape)), dy \(describe(dy.shape)) and "
                + "dx \(describe(dx.shape)) must match")
        }
        for case let (name, t?, n) in [("gamma", gamma, cols), ("dgamma", dgamma, cols), ("rstd", rstd, rows)]
            as [(String, Tensor?, Int)] where t.count != n {
            throw LoRAError.shapeMismatch("rmsNormBackward: \(name) is \(describe(t.shape)) but should hold \(n)")
        }
        if accumulate && dx.storage === dy.storage {
            throw LoRAError.invalidArgument("rmsNormBackward: dx cannot be dy when accumulating")
        }
        try requireDisjoint("rmsNormBackward", outputs: [("dx", dx), ("dgamma", dgamma)],
                            inputs: [("x", x), ("gamma", gamma), ("rstd", rstd)])
        try requireDisjoint("rmsNormBackward", outputs: [("dgamma", dgamma)], inputs: [("dy", dy)])
        (self.x, self.gamma, self.rstd, self.dy, self.dx) = (x, gamma, rstd, dy, dx)
        (self.dgamma, self.accumulate, self.rows, self.cols) = (dgamma, accumulate, rows, cols)
    }
}

/// Throws unless no output shares memory with another output or with any of the inputs named (those an op reads
/// after it has started writing, so that it cannot run in place on them).
func requireDisjoint(_ op: String, outputs: [(String, Tensor?)], inputs: [(String, Tensor?)]) throws {
    let present = outputs.compactMap { name, t in t.map { (name, $0) } }
    for (i, (name, output)) in present.enumerated() {
        for case let (other, input?) in inputs where input.storage === output.storage {
            throw LoRAError.invalidArgument("\(op): output \(name) shares memory with input \(other)")
        }
        for (other, second) in present[(i + 1)...] where second.storage === output.storage {
            throw LoRAError.invalidArgument("\(op): outputs \(name) and \(other) share memory")
        }
    }
}
