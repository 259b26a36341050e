// CPU elementwise ops: fill, copy, bias add, axpy.

extension CPUBackend {
    public func fill(_ tensor: Tensor, with value: Float) throws {
        try requireOwned("fill", tensor)
        elements(tensor).update(repeating: value, count: tensor.count)
    }

    public func copy(_ source: Tensor, to destination: Tensor) throws {
        try validateCopy(source, destination)
        elements(destination).update(from: elements(source), count: source.count)
    }

    /// y [rows, cols] += bias [cols].
    public func addBias(_ op: BiasAdd) throws {
        try requireOwned(op)
        let (bias, y) = (elements(op.bias), elements(op.y))
        for r in 0..<op.rows {
            let row = y + r * op.cols
            for j in 0..<op.cols { row[j] += bias[j] }
        }
    }

    /// y += alpha·x.
    public func axpy(_ op: Axpy) throws {
        try requireOwned(op)
        let (x, y) = (elements(op.x), elements(op.y))
        for i in 0..<op.y.count { y[i] += op.alpha * x[i] }
    }
}
