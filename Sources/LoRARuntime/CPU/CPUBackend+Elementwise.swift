// CPU elementwise ops: fill, copy, bias add, axpy. 16 lanes at a time, chunks split over the pool.

extension CPUBackend {
    public func fill(_ tensor: Tensor, with value: Float) throws {
        try requireOwned("fill", tensor)
        let p = elements(tensor)
        forEachChunk(count: tensor.count) { range in
            (p + range.lowerBound).update(repeating: value, count: range.count)
        }
    }

    public func copy(_ source: Tensor, to destination: Tensor) throws {
        try validateCopy(source, destination)
        let (src, dst) = (elements(source), elements(destination))
        guard src != dst else { return }
        forEachChunk(count: source.count) { range in
            (dst + range.lowerBound).update(from: src + range.lowerBound, count: range.count)
        }
    }

    /// y [rows, cols] += bias [cols].
    public func addBias(_ op: BiasAdd) throws {
        try requireOwned(op)
        let (bias, y, cols) = (elements(op.bias), elements(op.y), op.cols)
        forEachRowRange(rows: op.rows, cols: cols) { rows in
            for r in rows {
                let row = y + r * cols
                let full = cols & ~15
                for j in stride(from: 0, to: full, by: 16) { storeVector(loadVector(row + j) + loadVector(bias + j), row + j) }
                for j in full..<cols { row[j] += bias[j] }
            }
        }
    }

    /// y += alpha·x.
    public func axpy(_ op: Axpy) throws {
        try requireOwned(op)
        let (x, y, alpha) = (elements(op.x), elements(op.y), op.alpha)
        forEachChunk(count: op.y.count) { range in
            let va = Vector(repeating: alpha)
            var i = range.lowerBound
            while i + 16 <= range.upperBound {
                storeVector(multiplyAdd(loadVector(y + i), va, loadVector(x + i)), y + i)
                i += 16
            }
            while i < range.upperBound { y[i] = multiplyAdd(y[i], alpha, x[i]); i += 1 }
        }
    }
}
