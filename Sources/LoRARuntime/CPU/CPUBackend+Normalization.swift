// CPU layer normalization and RMS normalization and their gradients: one row at a time, 16 lanes at a time. The
// parameter gradients are sums over rows; each block of `normBlockRows` rows adds its own partial and the blocks
// are then added in order, so dgamma and dbeta are the same bits on any number of threads.

extension CPUBackend {
    /// Rows per block of the parameter-gradient sums: the unit of parallel work in the backward pass.
    static let normBlockRows = 32

    public func layerNorm(_ op: LayerNorm) throws {
        try requireOwned(op)
        let (x, y, gamma, beta, cols) = (elements(op.x), elements(op.y), elements(op.gamma), elements(op.beta), op.cols)
        let (mean, rstd) = (op.mean.map(elements), op.rstd.map(elements))
        let epsilon = op.epsilon
        forEachRowRange(rows: op.rows, cols: cols) { rows in
            for r in rows {
                let (m, s) = Self.layerNormRow(x + r * cols, y + r * cols, gamma, beta, cols: cols, epsilon: epsilon)
                mean?[r] = m
                rstd?[r] = s
            }
        }
    }

    /// One row: the mean, the variance around it (two passes: exact even when |mean| ≫ spread), then y.
    /// Returns (mean, rstd). Out of line so its vector loops compile as vector code (see `softmaxRow`).
    static func layerNormRow(_ x: UnsafeMutablePointer<Float>, _ y: UnsafeMutablePointer<Float>,
                             _ gamma: UnsafeMutablePointer<Float>, _ beta: UnsafeMutablePointer<Float>,
                             cols: Int, epsilon: Float) -> (Float, Float) {
        let full = cols & ~15
        var acc = Vector()
        for j in stride(from: 0, to: full, by: 16) { acc += loadVector(x + j) }
        var sum = horizontalSum(acc)
        for j in full..<cols { sum += x[j] }
        let mean = sum / Float(cols)
        let vm = Vector(repeating: mean)
        acc = Vector()
        for j in stride(from: 0, to: full, by: 16) { let d = loadVector(x + j) - vm; acc = multiplyAdd(acc, d, d) }
        var squares = horizontalSum(acc)
        for j in full..<cols { let d = x[j] - mean; squares = multiplyAdd(squares, d, d) }
        let rstd = 1 / (squares / Float(cols) + epsilon).squareRoot()
        let vr = Vector(repeating: rstd)
        for j in stride(from: 0, to: full, by: 16) {
            storeVector(multiplyAdd(loadVector(beta + j), (loadVector(x + j) - vm) * vr, loadVector(gamma + j)), y + j)
        }
        for j in full..<cols { y[j] = multiplyAdd(beta[j], (x[j] - mean) * rstd, gamma[j]) }
        return (mean, rstd)
    }

    public func layerNormBackward(_ op: LayerNormBackward) throws {
        try requireOwned(op)
        let (rows, cols) = (op.rows, op.cols)
        let wantsParameters = op.dgamma != nil || op.dbeta != nil
        let blocks = (rows + Self.normBlockRows - 1) / Self.normBlockRows
        // Per block: dgamma partial [cols], then dbeta partial [cols].
        let partials = UnsafeMutablePointer<Float>.allocate(capacity: wantsParameters ? blocks * 2 * cols : 0)
        defer { partials.deallocate() }
        let rowsOp = LayerNormRows(op: op, backend: self)
        forEachPart(parts: blocks, work: rows * cols) { block in
            let range = block * Self.normBlockRows..<min(rows, (block + 1) * Self.normBlockRows)
            rowsOp.run(range, partials: wantsParameters ? partials + block * 2 * cols : nil)
        }
        guard wantsParameters else { return }
        for (offset, target) in [(0, op.dgamma), (cols, op.dbeta)] {
            guard let target else { continue }
            let t = elements(target)
            for block in 0..<blocks { Self.addRow(partials + block * 2 * cols + offset, into: t, count: cols) }
        }
    }

    /// Calls `body` for every part in `0..<parts`, across the pool when `work` (elements) is large.
    func forEachPart(parts: Int, work: Int, _ body: (Int) -> Void) {
        guard work >= Self.parallelElements, parts > 1 else { return (0..<parts).forEach(body) }
        pool.run(parts: parts, body)
    }

    /// t[j] += source[j].
    static func addRow(_ source: UnsafeMutablePointer<Float>, into t: UnsafeMutablePointer<Float>, count: Int) {
        let full = count & ~15
        for j in stride(from: 0, to: full, by: 16) { storeVector(loadVector(t + j) + loadVector(source + j), t + j) }
        for j in full..<count { t[j] += source[j] }
    }
}

/// The pointers of one layer-norm backward, resolved once; `run` does a block of rows.
private struct LayerNormRows {
    let x, gamma, mean, rstd, dy, dx: UnsafeMutablePointer<Float>
    let cols: Int, accumulate: Bool

    init(op: LayerNormBackward, backend: CPUBackend) {
        (x, gamma, mean, rstd) = (backend.elements(op.x), backend.elements(op.gamma), backend.elements(op.mean), backend.elements(op.rstd))
        (dy, dx, cols, accumulate) = (backend.elements(op.dy), backend.elements(op.dx), op.cols, op.accumulate)
    }

    /// dx for `rows`; when `partials` is given, also this block's Σ dy·x̂ (at partials) and Σ dy (at partials + cols).
    func run(_ rows: Range<Int>, partials: UnsafeMutablePointer<Float>?) {
        partials?.update(repeating: 0, count: 2 * cols)
        for r in rows {
            let (xr, dyr, dxr) = (x + r * cols, dy + r * cols, dx + r * cols)
            // Reads dy before dx is written: dx may be dy.
            if let partials { Self.accumulateParameters(xr, dyr, mean: mean[r], rstd: rstd[r], partials, cols: cols) }
            Self.rowGradient(xr, dyr, dxr, gamma, mean: mean[r], rstd: rstd[r], cols: cols, accumulate: accumulate)
        }
    }

    /// dgamma partial += dy·x̂, dbeta partial += dy.
    static func accumulateParameters(_ x: UnsafeMutablePointer<Float>, _ dy: UnsafeMutablePointer<Float>, mean: Float, rstd: Float,
                                     _ partials: UnsafeMutablePointer<Float>, cols: Int) {
        let (vm, vr) = (Vector(repeating: mean), Vector(repeating: rstd))
        let full = cols & ~15
        for j in stride(from: 0, to: full, by: 16) {
            let d = loadVector(dy + j)
            storeVector(multiplyAdd(loadVector(partials + j), d, (loadVector(x + j) - vm) * vr), partials + j)
            storeVector(loadVector(partials + cols + j) + d, partials + cols + j)
        }
        for j in full..<cols {
            partials[j] = multiplyAdd(partials[j], dy[j], (x[j] - mean) * rstd)
            partials[cols + j] += dy[j]
        }
    }

    /// dx = rstd·(g − mean(g) − x̂·mean(g·x̂)), g = dy·gamma; written or added.
    static func rowGradient(_ x: UnsafeMutablePointer<Float>, _ dy: UnsafeMutablePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
                            _ gamma: UnsafeMutablePointer<Float>, mean: Float, rstd: Float, cols: Int, accumulate: Bool) {
        let (vm, vr) = (Vector(repeating: mean), Vector(repeating: rstd))
        let full = cols & ~15
        var (sg, sgx) = (Vector(), Vector())
        for j in stride(from: 0, to: full, by: 16) {
            let g = loadVector(dy + j) * loadVector(gamma + j)
            sg += g
            sgx = multiplyAdd(sgx, g, (loadVector(x + j) - vm) * vr)
        }
        var (meanG, meanGX) = (horizontalSum(sg), horizontalSum(sgx))
        for j in full..<cols {
            let g = dy[j] * gamma[j]
            meanG += g
            meanGX = multiplyAdd(meanGX, g, (x[j] - mean) * rstd)
        }
        (meanG, meanGX) = (meanG / Float(cols), meanGX / Float(cols))
        let (va, vb) = (Vector(repeating: meanG), Vector(repeating: meanGX))
        for j in stride(from: 0, to: full, by: 16) {
            let xhat = (loadVector(x + j) - vm) * vr
            let d = vr * (loadVector(dy + j) * loadVector(gamma + j) - va - xhat * vb)
            // Not `dx·0 + d`: a fresh dx may hold NaN.
            storeVector(accumulate ? loadVector(dx + j) + d : d, dx + j)
        }
        for j in full..<cols {
            let xhat = (x[j] - mean) * rstd
            let d = rstd * (dy[j] * gamma[j] - meanG - xhat * meanGX)
            dx[j] = accumulate ? dx[j] + d : d
        }
    }
}

// MARK: - RMS normalization

extension CPUBackend {
    public func rmsNorm(_ op: RMSNorm) throws {
        try requireOwned(op)
        let (x, y, gamma, cols, epsilon) = (elements(op.x), elements(op.y), elements(op.gamma), op.cols, op.epsilon)
        let rstd = op.rstd.map(elements)
        forEachRowRange(rows: op.rows, cols: cols) { rows in
            for r in rows {
                let s = Self.rmsNormRow(x + r * cols, y + r * cols, gamma, cols: cols, epsilon: epsilon)
                rstd?[r] = s
            }
        }
    }

    /// One row: rstd from the mean square, then y = (x·rstd)·gamma (HF's order of the two products). Returns rstd.
    /// Out of line so its vector loops compile as vector code (see `softmaxRow`).
    static func rmsNormRow(_ x: UnsafeMutablePointer<Float>, _ y: UnsafeMutablePointer<Float>,
                           _ gamma: UnsafeMutablePointer<Float>, cols: Int, epsilon: Float) -> Float {
        let rstd = 1 / (dotProduct(x, x, count: cols) / Float(cols) + epsilon).squareRoot()
        let vr = Vector(repeating: rstd)
        let full = cols & ~15
        for j in stride(from: 0, to: full, by: 16) { storeVector(loadVector(x + j) * vr * loadVector(gamma + j), y + j) }
        for j in full..<cols { y[j] = x[j] * rstd * gamma[j] }
        return rstd
    }

    public func rmsNormBackward(_ op: RMSNormBackward) throws {
        try requireOwned(op)
        let (rows, cols) = (op.rows, op.cols)
        let blocks = (rows + Self.normBlockRows - 1) / Self.normBlockRows
        // Per block: its dgamma partial [cols].
        let partials = UnsafeMutablePointer<Float>.allocate(capacity: op.dgamma == nil ? 0 : blocks * cols)
        defer { partials.deallocate() }
        let rowsOp = RMSNormRows(op: op, backend: self)
        forEachPart(parts: blocks, work: rows * cols) { block in
            let range = block * Self.normBlockRows..<min(rows, (block + 1) * Self.normBlockRows)
            rowsOp.run(range, partials: op.dgamma == nil ? nil : partials + block * cols)
        }
        guard let dgamma = op.dgamma.map(elements) else { return }
        for block in 0..<blocks { Self.addRow(partials + block * cols, into: dgamma, count: cols) }
    }
}

/// The pointers of one RMS-norm backward, resolved once; `run` does a block of rows.
private struct RMSNormRows {
    let x, gamma, rstd, dy, dx: UnsafeMutablePointer<Float>
    let cols: Int, accumulate: Bool

    init(op: RMSNormBackward, backend: CPUBackend) {
        (x, gamma, rstd) = (backend.elements(op.x), backend.elements(op.gamma), backend.elements(op.rstd))
        (dy, dx, cols, accumulate) = (backend.elements(op.dy), backend.elements(op.dx), op.cols, op.accumulate)
    }

    /// dx for `rows`; when `partials` is given, also this block's Σ dy·x̂ there.
    func run(_ rows: Range<Int>, partials: UnsafeMutablePointer<Float>?) {
        partials?.update(repeating: 0, count: cols)
        for r in rows {
            let (xr, dyr, dxr) = (x + r * cols, dy + r * cols, dx + r * cols)
            // Reads dy before dx is written: dx may be dy.
            if let partials { Self.accumulateGamma(xr, dyr, rstd: rstd[r], partials, cols: cols) }
            Self.rowGradient(xr, dyr, dxr, gamma, rstd: rstd[r], cols: cols, accumulate: accumulate)
        }
    }

    /// partial += dy·(x·rstd).
    static func accumulateGamma(_ x: UnsafeMutablePointer<Float>, _ dy: UnsafeMutablePointer<Float>, rstd: Float,
                                _ partials: UnsafeMutablePointer<Float>, cols: Int) {
        let vr = Vector(repeating: rstd)
        let full = cols & ~15
        for j in stride(from: 0, to: full, by: 16) {
            storeVector(multiplyAdd(loadVector(partials + j), loadVector(dy + j), loadVector(x + j) * vr), partials + j)
        }
        for j in full..<cols { partials[j] = multiplyAdd(partials[j], dy[j], x[j] * rstd) }
    }

    /// dx = rstd·(g − x̂·mean(g·x̂)), g = dy·gamma, x̂ = x·rstd; written or added.
    static func rowGradient(_ x: UnsafeMutablePointer<Float>, _ dy: UnsafeMutablePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
                            _ gamma: UnsafeMutablePointer<Float>, rstd: Float, cols: Int, accumulate: Bool) {
        let vr = Vector(repeating: rstd)
        let full = cols & ~15
        var sgx = Vector()
        for j in stride(from: 0, to: full, by: 16) {
            sgx = multiplyAdd(sgx, loadVector(dy + j) * loadVector(gamma + j), loadVector(x + j) * vr)
        }
        var meanGX = horizontalSum(sgx)
        for j in full..<cols { meanGX = multiplyAdd(meanGX, dy[j] * gamma[j], x[j] * rstd) }
        meanGX /= Float(cols)
        let vb = Vector(repeating: meanGX)
        for j in stride(from: 0, to: full, by: 16) {
            let d = vr * (loadVector(dy + j) * loadVector(gamma + j) - loadVector(x + j) * vr * vb)
            // Not `dx·0 + d`: a fresh dx may hold NaN.
            storeVector(accumulate ? loadVector(dx + j) + d : d, dx + j)
        }
        for j in full..<cols {
            let d = rstd * (dy[j] * gamma[j] - x[j] * rstd * meanGX)
            dx[j] = accumulate ? dx[j] + d : d
        }
    }
}
