// CPU elementwise ops: fill, copy, block copy, bias add, axpy, dropout. 16 lanes at a time, chunks split over the pool.

extension CPUBackend {
    public func fill(_ tensor: Tensor, with value: Float) throws {
        try requireOwned("fill", tensor)
        try requireFloat32("fill", ("the tensor", tensor))
        let p = elements(tensor)
        forEachChunk(count: tensor.count) { range in
            (p + range.lowerBound).update(repeating: value, count: range.count)
        }
    }

    public func copy(_ source: Tensor, to destination: Tensor) throws {
        try validateCopy(source, destination)
        // Bytes, so any dtype copies; chunks of whole elements keep every element in one thread's chunk.
        let (src, dst, size) = (bytes(source), bytes(destination), source.dtype.size)
        guard src != dst else { return }
        forEachChunk(count: source.count) { range in
            (dst + range.lowerBound * size).copyMemory(from: src + range.lowerBound * size, byteCount: range.count * size)
        }
    }

    public func blockCopy(_ op: BlockCopy) throws {
        try requireOwned(op)
        let (src, dst) = (elements(op.source.tensor), elements(op.destination.tensor))
        let (s, d, cols) = (op.source, op.destination, op.cols)
        forEachRowRange(rows: op.batch * op.rows, cols: cols) { range in
            for r in range {
                let (b, i) = r.quotientAndRemainder(dividingBy: op.rows)
                (dst + d.offset + b * d.batchStride + i * d.ld).update(from: src + s.offset + b * s.batchStride + i * s.ld, count: cols)
            }
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

    /// y = x·mask/(1 − p), the mask from `Dropout.hash`, 16 lanes at a time.
    public func dropout(_ op: Dropout) throws {
        try requireOwned(op)
        let (x, y) = (elements(op.x), elements(op.y))
        forEachChunk(count: op.x.count) { range in
            Self.dropoutChunk(x, y, range: range, threshold: op.threshold, scale: op.keepScale, seed: op.seed, offset: op.indexOffset)
        }
    }

    /// Out of line so the integer hash runs as vector code.
    static func dropoutChunk(_ x: UnsafeMutablePointer<Float>, _ y: UnsafeMutablePointer<Float>, range: Range<Int>,
                             threshold: UInt32, scale: Float, seed: UInt64, offset: UInt32) {
        let lanes = SIMD16<UInt32>(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
        var i = range.lowerBound
        while i + 16 <= range.upperBound {
            let h = Dropout.hash(SIMD16<UInt32>(repeating: UInt32(truncatingIfNeeded: i) &+ offset) &+ lanes, seed: seed)
            var out = loadVector(x + i) * scale
            out.replace(with: 0, where: h .< SIMD16(repeating: threshold))  // Dropout.drops, 16 lanes
            storeVector(out, y + i)
            i += 16
        }
        while i < range.upperBound {
            let h = Dropout.hash(UInt32(truncatingIfNeeded: i) &+ offset, seed: seed)
            y[i] = Dropout.drops(h, threshold: threshold) ? 0 : x[i] * scale
            i += 1
        }
    }
}
