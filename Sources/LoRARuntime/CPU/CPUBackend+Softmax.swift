// CPU softmax over the last axis (scale, causal mask) and its gradient: 16 lanes at a time, rows split over the
// pool. Each row is computed the same way whichever thread takes it, so results do not depend on the threads.

extension CPUBackend {
    /// y[row, j] = exp(s·x[j] − max) / Σ over the visible keys; masked entries 0.
    public func softmax(_ op: Softmax) throws {
        try requireOwned(op)
        let (x, y, cols, scale) = (elements(op.x), elements(op.y), op.cols, op.scale)
        forEachRowRange(rows: op.rows, cols: cols) { rows in
            for r in rows {
                let visible = op.visibleCount(row: r)
                Self.softmaxRow(x + r * cols, y + r * cols, visible: visible, scale: scale)
                (y + r * cols + visible).update(repeating: 0, count: cols - visible)
            }
        }
    }

    /// One row: max, then exp and sum in one pass (written to y), then one scaling pass; all in L1.
    /// Kept out of line: inlined into the ops' closures, vector code here compiles to split 128-bit halves.
    static func softmaxRow(_ x: UnsafeMutablePointer<Float>, _ y: UnsafeMutablePointer<Float>, visible: Int, scale: Float) {
        guard visible > 0 else { return }
        let vs = Vector(repeating: scale)
        let full = visible & ~15
        // Two running maxima halve the dependency chain.
        var (max0, max1) = (Vector(repeating: -.infinity), Vector(repeating: -.infinity))
        var j = 0
        while j + 32 <= full {
            max0 = maximum(max0, loadVector(x + j) * vs)
            max1 = maximum(max1, loadVector(x + j + 16) * vs)
            j += 32
        }
        if j < full { max0 = maximum(max0, loadVector(x + j) * vs) }
        var largest = horizontalMax(maximum(max0, max1))
        for j in full..<visible { largest = max(largest, x[j] * scale) }
        let sum = exponentiate(x, y, count: visible, scale: scale, shift: largest)
        let inverse = Vector(repeating: 1 / sum)
        for j in stride(from: 0, to: full, by: 16) { storeVector(loadVector(y + j) * inverse, y + j) }
        for j in full..<visible { y[j] *= inverse[0] }
    }

    /// dx = s·y⊙(dy − Σ dy⊙y), per row.
    public func softmaxBackward(_ op: SoftmaxBackward) throws {
        try requireOwned(op)
        let (y, dy, dx, cols) = (elements(op.y), elements(op.dy), elements(op.dx), op.cols)
        let scale = op.scale
        forEachRowRange(rows: op.rows, cols: cols) { rows in
            for r in rows {
                let (yr, dyr, dxr) = (y + r * cols, dy + r * cols, dx + r * cols)
                let dot = dotProduct(dyr, yr, count: cols)
                let (vd, vs) = (Vector(repeating: dot), Vector(repeating: scale))
                let full = cols & ~15
                for j in stride(from: 0, to: full, by: 16) {
                    storeVector(vs * loadVector(yr + j) * (loadVector(dyr + j) - vd), dxr + j)
                }
                for j in full..<cols { dxr[j] = scale * yr[j] * (dyr[j] - dot) }
            }
        }
    }
}
