// CPU softmax over the last axis (scale, causal mask) and its gradient: 16 lanes at a time, rows split over the
// pool. Each row is computed the same way whichever thread takes it, so results do not depend on the threads.

extension CPUBackend {
    /// y[row, j] = exp(s·x[j] − max) / Σ over the visible keys; masked entries 0.
    ///
    /// Rows are pipelined: the pass that scales row r's exponentials also finds row r+1's maximum. That pass
    /// is the first to read row r+1 from memory, and sharing it with work on data already in L1 lets the
    /// loads overlap (a separate max pass stalled on them: half the op's time).
    public func softmax(_ op: Softmax) throws {
        try requireOwned(op)
        let (x, y, cols, scale) = (elements(op.x), elements(op.y), op.cols, op.scale)
        let keys = visibleKeys(op.segmentStarts, op.visibleKeys(row:))
        forEachRowRange(rows: op.rows, cols: cols) { rows in
            if op.window == nil && op.segmentStarts == nil {
                Self.softmaxRows(x, y, rows: rows, cols: cols, scale: scale, visibleCount: op.visibleCount(row:))
            } else {
                for r in rows { Self.softmaxBandRow(x + r * cols, y + r * cols, keys: keys(r), cols: cols, scale: scale) }
            }
        }
    }

    /// Row r's visible keys: `causal(r)` cut to start at its segment start where there are starts.
    func visibleKeys(_ starts: SegmentStarts?, _ causal: @escaping (Int) -> Range<Int>) -> (Int) -> Range<Int> {
        guard let starts else { return causal }
        let values = int32s(starts.tensor)
        return { r in SegmentStarts.keys(causal(r), from: Int(values[starts.index(row: r)])) }
    }

    /// One row that sees only `keys` (a sliding window's band): the softmax of those entries, 0 elsewhere.
    /// Not pipelined like `softmaxRows`: windows shorter than the sequence are rare enough not to need it.
    static func softmaxBandRow(_ x: UnsafeMutablePointer<Float>, _ y: UnsafeMutablePointer<Float>, keys: Range<Int>,
                               cols: Int, scale: Float) {
        if !keys.isEmpty {
            let (lo, n) = (keys.lowerBound, keys.count)
            let largest = scaledMaximum(x + lo, count: n, scale: scale, readable: cols - lo)
            _ = softmaxRow(x + lo, y + lo, visible: n, cols: cols - lo, scale: scale, largest: largest, next: x, nextVisible: 0)
        }
        // After the row is done: y may be x.
        y.update(repeating: 0, count: keys.lowerBound)
        (y + keys.upperBound).update(repeating: 0, count: cols - keys.upperBound)
    }

    /// Rows `rows` of `[.., cols]` x into y, row r over its first `visibleCount(r)` entries (the rest 0).
    @inline(__always)
    static func softmaxRows(_ x: UnsafeMutablePointer<Float>, _ y: UnsafeMutablePointer<Float>, rows: Range<Int>,
                            cols: Int, scale: Float, visibleCount: (Int) -> Int) {
        guard let first = rows.first else { return }
        var largest = scaledMaximum(x + first * cols, count: visibleCount(first), scale: scale, readable: cols)
        for r in rows {
            let visible = visibleCount(r)
            let nextVisible = r + 1 < rows.upperBound ? visibleCount(r + 1) : 0
            largest = softmaxRow(x + r * cols, y + r * cols, visible: visible, cols: cols, scale: scale, largest: largest,
                                 next: x + (r + 1) * cols, nextVisible: nextVisible)
            (y + r * cols + visible).update(repeating: 0, count: cols - visible)
        }
    }

    /// One row (`cols` long) from its maximum: exp and sum in one pass (written to y), then the scaling pass, which
    /// also finds the maximum of the next row's first `nextVisible` entries (returned; −inf when there are none).
    /// A causal row's ragged end is one masked vector when the row has room for it (its masked entries, which a
    /// `.lowerC` GEMM may leave holding anything, are never used).
    /// Out of line: inlined into the ops' closures, vector code here compiles to split 128-bit halves.
    static func softmaxRow(_ x: UnsafeMutablePointer<Float>, _ y: UnsafeMutablePointer<Float>, visible: Int, cols: Int,
                           scale: Float, largest: Float, next: UnsafeMutablePointer<Float>, nextVisible: Int) -> Float {
        guard visible > 0 else { return scaledMaximum(next, count: nextVisible, scale: scale, readable: cols) }
        let sum = exponentiate(x, y, count: visible, scale: scale, shift: largest, readable: cols)
        let (inverse, vs) = (Vector(repeating: 1 / sum), Vector(repeating: scale))
        let common = min(visible, nextVisible) & ~15
        var nextMax = Vector(repeating: -.infinity)
        for j in stride(from: 0, to: common, by: 16) {
            storeVector(loadVector(y + j) * inverse, y + j)
            nextMax = maximum(nextMax, loadVector(next + j) * vs)
        }
        // exponentiate wrote zeros past `visible` up to the end of a masked vector, so the whole vector scales.
        let full = visible & ~15, padded = full + 16 <= cols ? (visible + 15) & ~15 : full
        for j in stride(from: common, to: padded, by: 16) { storeVector(loadVector(y + j) * inverse, y + j) }
        for j in padded..<max(padded, visible) { y[j] *= inverse[0] }
        // The next row's entries past the shared part (a causal row sees one more than this one): whole vectors,
        // then a masked one where the row has room, in the same running maximum.
        var done = common
        while done + 16 <= nextVisible {
            nextMax = maximum(nextMax, loadVector(next + done) * vs)
            done += 16
        }
        if done < nextVisible && done + 16 <= cols {
            let tail = (loadVector(next + done) * vs).replacing(with: -.infinity, where: lanes(from: nextVisible - done))
            (nextMax, done) = (maximum(nextMax, tail), nextVisible)
        }
        let largestSoFar = horizontalMax(nextMax)
        guard done < nextVisible else { return largestSoFar }
        return max(largestSoFar, scaledMaximum(next + done, count: nextVisible - done, scale: scale))
    }

    /// The largest scale·x[j] over `count` entries (−inf for none), with two running maxima to halve the
    /// dependency chain. A NaN may be skipped here; it still reaches the sum of exponentials. With `readable`
    /// entries available, the ragged end is one masked vector.
    static func scaledMaximum(_ x: UnsafeMutablePointer<Float>, count: Int, scale: Float, readable: Int = 0) -> Float {
        let vs = Vector(repeating: scale)
        let full = count & ~15
        var (max0, max1) = (Vector(repeating: -.infinity), Vector(repeating: -.infinity))
        var j = 0
        while j + 32 <= full {
            max0 = maximum(max0, loadVector(x + j) * vs)
            max1 = maximum(max1, loadVector(x + j + 16) * vs)
            j += 32
        }
        if j < full { max0 = maximum(max0, loadVector(x + j) * vs) }
        var largest = horizontalMax(maximum(max0, max1))
        if full < count && full + 16 <= readable {
            let tail = (loadVector(x + full) * vs).replacing(with: -.infinity, where: lanes(from: count - full))
            return max(largest, horizontalMax(tail))
        }
        for j in full..<count { largest = max(largest, x[j] * scale) }
        return largest
    }

    /// dx = s·y⊙(dy − Σ dy⊙y) over each row's visible entries; masked entries 0.
    public func softmaxBackward(_ op: SoftmaxBackward) throws {
        try requireOwned(op)
        let (y, dy, dx, cols) = (elements(op.y), elements(op.dy), elements(op.dx), op.cols)
        let scale = op.scale
        let keys = visibleKeys(op.segmentStarts, op.visibleKeys(row:))
        forEachRowRange(rows: op.rows, cols: cols) { rows in
            for r in rows {
                Self.softmaxGradientBandRow(y + r * cols, dy + r * cols, dx + r * cols, keys: keys(r),
                                            cols: cols, scale: scale)
            }
        }
    }

    /// One row whose visible entries are `keys`: the gradient over them, 0 elsewhere (dy there not read).
    @inline(__always)
    static func softmaxGradientBandRow(_ y: UnsafeMutablePointer<Float>, _ dy: UnsafeMutablePointer<Float>,
                                       _ dx: UnsafeMutablePointer<Float>, keys: Range<Int>, cols: Int, scale: Float) {
        let lo = keys.lowerBound
        softmaxGradientRow(y + lo, dy + lo, dx + lo, visible: keys.count, cols: cols - lo, scale: scale)
        dx.update(repeating: 0, count: lo)
    }

    /// One row. Whole vectors run up to the mask's edge: in the last one, dy's masked lanes (which may hold
    /// anything, NaN included) are replaced by 0 as they are loaded, and y is 0 there, so dx is 0 there too.
    static func softmaxGradientRow(_ y: UnsafeMutablePointer<Float>, _ dy: UnsafeMutablePointer<Float>,
                                   _ dx: UnsafeMutablePointer<Float>, visible: Int, cols: Int, scale: Float) {
        let vectorEnd = min((visible + 15) & ~15, cols & ~15)
        @inline(__always) func visibleDy(_ j: Int) -> Vector {
            loadVector(dy + j).replacing(with: 0, where: lanes(from: visible - j))
        }
        var acc = Vector()
        for j in stride(from: 0, to: vectorEnd, by: 16) { acc = multiplyAdd(acc, visibleDy(j), loadVector(y + j)) }
        let tail = vectorEnd..<max(vectorEnd, visible)  // visible entries past the last whole vector
        var dot = horizontalSum(acc)
        for j in tail { dot = multiplyAdd(dot, dy[j], y[j]) }
        let (vd, vs) = (Vector(repeating: dot), Vector(repeating: scale))
        for j in stride(from: 0, to: vectorEnd, by: 16) {
            storeVector(vs * loadVector(y + j) * (visibleDy(j) - vd), dx + j)
        }
        for j in tail { dx[j] = scale * y[j] * (dy[j] - dot) }
        (dx + tail.upperBound).update(repeating: 0, count: cols - tail.upperBound)
    }
}
