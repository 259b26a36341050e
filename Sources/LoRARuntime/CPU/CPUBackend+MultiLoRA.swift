// CPU multi-LoRA (MultiLoRA.swift): rows are grouped by adapter, so every adapter's A and Bᵀ are read once per batch
// however its rows are spread. A group of under 16 rows (decode: a sequence's one new token) is computed row by row in
// place: r_a dot products for u, then r_a axpys of Bᵀ's rows into y (packing the adapter for a GEMM would cost as
// much as the multiply-adds). A larger group takes the single-adapter path's two packed GEMMs (u = x·A_aᵀ on the
// narrow kernel for ranks ≤ 16, then y += s_a·u·B_aᵀ reading Bᵀ in place): one contiguous range of rows (SGMV: a
// prefill segment) in place, scattered rows gathered into scratch first and their update added back.
// Parallel: many groups run a whole group per part; a few large ones split their GEMMs over the pool. Rows never
// overlap between groups, so parts write disjoint rows of y.

extension CPUBackend {
    /// Groups with fewer rows than this run row by row: packing A for the narrow GEMM does not pay below it
    /// (`lora bench multi-lora`, 64 rows over 8 adapters, 576 wide, r=16: 0.58 of the single adapter's speed with
    /// the GEMMs at 8 rows a group, 0.97 row by row).
    static let multiLoRARowByRow = 16
    /// Larger groups also run row by row while rows × rank stays below this: a prefill segment of 16-20 rows at
    /// r=8 took 12 µs row by row against 17-20 µs on the GEMMs (`lora bench multi-lora --adapters 1`, 576 wide;
    /// 3 against 4.6 µs at 128 wide); at rows × rank ≈ 256 the two tie, and 24 rows at r=16 took 31 µs row by row
    /// against 23 µs on the GEMMs.
    static let multiLoRARowByRowTerms = 256
    /// Below this many multiply-adds a batch runs on one thread. A decode step's 16 rows over 8 adapters (~150K at
    /// 576 wide) are bound by reading the adapters, which two threads do faster: at the GEMMs' 2^18 they ran on one,
    /// and smollm-135m's mixed batch decoded at 0.86 of the merged model's speed against 0.92 now (2 threads, Zen 5).
    static let multiLoRAParallelWork = 1 << 15

    public func multiLoRA(_ op: MultiLoRA) throws {
        try requireOwned(op)
        let groups = op.activeGroups
        guard !groups.isEmpty else { return }
        let (inF, outF) = (op.inFeatures, op.outFeatures)
        let work = groups.map { group in
            group.ranges.reduce(0) { $0 + $1.count } * op.slots.ranks[group.adapter] * (inF + outF)
        }
        let pool = self.pool
        let total = work.reduce(0, +)
        if total < Self.multiLoRAParallelWork || groups.count >= 2 * pool.threadCount
            || (groups.count > 1 && work.max()! < PackedGEMM.parallelThreshold) {
            // Whole groups per part (all on this thread when the batch is small).
            let parts = total < Self.multiLoRAParallelWork ? 1 : groups.count
            runParts(parts, pool) { part in
                for g in parts == 1 ? groups.indices : part..<part + 1 {
                    multiLoRAGroup(op, adapter: groups[g].adapter, ranges: groups[g].ranges, pool: nil)
                }
            }
        } else {
            for group in groups { multiLoRAGroup(op, adapter: group.adapter, ranges: group.ranges, pool: pool) }
        }
    }

    /// One adapter's rows: `ranges` (non-empty, disjoint) of x and y.
    private func multiLoRAGroup(_ op: MultiLoRA, adapter: Int, ranges: [Range<Int>], pool: ThreadPool?) {
        let (inF, outF, maxRank) = (op.inFeatures, op.outFeatures, op.maxRank)
        let (r, scale) = (op.slots.ranks[adapter], op.slots.scales[adapter])
        let (x, y) = (elements(op.x), elements(op.y))
        // A_a [r, in] (row stride in) and B_aᵀ [r, out] (row stride out).
        let (a, bT) = (elements(op.a) + adapter * maxRank * inF, elements(op.bT) + adapter * maxRank * outF)
        let n = ranges.reduce(0) { $0 + $1.count }
        if n < Self.multiLoRARowByRow || n * r < Self.multiLoRARowByRowTerms {
            // Up to four rows at a time (gathered across ranges: decode's rows of one adapter lie apart).
            let u = ThreadScratch.current(.rows, floats: 4 * r)
            withUnsafeTemporaryAllocation(of: Int.self, capacity: 4) { block in
                var filled = 0
                for range in ranges {
                    for i in range {
                        block[filled] = i
                        filled += 1
                        if filled == 4 {
                            multiLoRARows(block, count: 4, x: x, y: y, a: a, bT: bT, rank: r, scale: scale, inF: inF, outF: outF, u: u)
                            filled = 0
                        }
                    }
                }
                if filled > 0 {
                    multiLoRARows(block, count: filled, x: x, y: y, a: a, bT: bT, rank: r, scale: scale, inF: inF, outF: outF, u: u)
                }
            }
            return
        }
        let aT = StridedMatrix(base: a, rowStride: 1, colStride: inF)
        let bView = StridedMatrix(base: bT, rowStride: outF, colStride: 1)
        if ranges.count == 1 {
            let first = ranges[0].lowerBound
            let u = ThreadScratch.current(.rows, floats: n * r)
            let uView = StridedMatrix(base: u, rowStride: r, colStride: 1)
            PackedGEMM.multiply(m: n, n: r, k: inF, alpha: 1, a: StridedMatrix(base: x + first * inF, rowStride: inF, colStride: 1),
                                b: aT, beta: 0, c: uView, pool: pool)
            PackedGEMM.multiply(m: n, n: outF, k: r, alpha: scale, a: uView, b: bView, beta: 1,
                                c: StridedMatrix(base: y + first * outF, rowStride: outF, colStride: 1), pool: pool)
            return
        }
        // Scattered rows: gathered x [n, in], u [n, r], the update [n, out], one scratch block.
        let gathered = ThreadScratch.current(.rows, floats: n * (inF + r + outF))
        let (u, update) = (gathered + n * inF, gathered + n * (inF + r))
        var row = 0
        for range in ranges {
            (gathered + row * inF).update(from: x + range.lowerBound * inF, count: range.count * inF)
            row += range.count
        }
        let uView = StridedMatrix(base: u, rowStride: r, colStride: 1)
        PackedGEMM.multiply(m: n, n: r, k: inF, alpha: 1, a: StridedMatrix(base: gathered, rowStride: inF, colStride: 1),
                            b: aT, beta: 0, c: uView, pool: pool)
        PackedGEMM.multiply(m: n, n: outF, k: r, alpha: scale, a: uView, b: bView, beta: 0,
                            c: StridedMatrix(base: update, rowStride: outF, colStride: 1), pool: pool)
        row = 0
        for range in ranges {
            addScaled(1, update + row * outF, to: y + range.lowerBound * outF, count: range.count * outF)
            row += range.count
        }
    }
}

/// `count` (1-4) rows of one adapter in place: u_i = s·A·x_i (r dot products), then y_i += Σ_q u_i[q]·Bᵀ[q].
/// The rows share each load of A and Bᵀ and run four independent FMA chains (one row alone waits on its chain's
/// latency); rows past `count` repeat the first and are never stored. Each row's bits are those of one row alone:
/// every dot product sums in `dotProduct`'s order, and each 16 outputs of y take the r terms in order q = 0..<r
/// (`addScaled`'s order), kept in a register between them.
@inline(__always)
private func multiLoRARows(_ rows: UnsafeMutableBufferPointer<Int>, count: Int, x: UnsafeMutablePointer<Float>,
                           y: UnsafeMutablePointer<Float>, a: UnsafeMutablePointer<Float>, bT: UnsafeMutablePointer<Float>,
                           rank r: Int, scale: Float, inF: Int, outF: Int, u: UnsafeMutablePointer<Float>) {
    let row0 = rows[0]
    let row = (row0, count > 1 ? rows[1] : row0, count > 2 ? rows[2] : row0, count > 3 ? rows[3] : row0)
    let (x0, x1, x2, x3) = (x + row.0 * inF, x + row.1 * inF, x + row.2 * inF, x + row.3 * inF)
    let fullIn = inF & ~15
    for q in 0..<r {
        let aq = a + q * inF
        var (s0, s1, s2, s3) = (Vector(), Vector(), Vector(), Vector())
        for k in stride(from: 0, to: fullIn, by: 16) {
            let av = loadVector(aq + k)
            s0 = multiplyAdd(s0, loadVector(x0 + k), av)
            s1 = multiplyAdd(s1, loadVector(x1 + k), av)
            s2 = multiplyAdd(s2, loadVector(x2 + k), av)
            s3 = multiplyAdd(s3, loadVector(x3 + k), av)
        }
        var (t0, t1, t2, t3) = (horizontalSum(s0), horizontalSum(s1), horizontalSum(s2), horizontalSum(s3))
        for k in fullIn..<inF {
            (t0, t1) = (multiplyAdd(t0, x0[k], aq[k]), multiplyAdd(t1, x1[k], aq[k]))
            (t2, t3) = (multiplyAdd(t2, x2[k], aq[k]), multiplyAdd(t3, x3[k], aq[k]))
        }
        (u[q], u[r + q], u[2 * r + q], u[3 * r + q]) = (scale * t0, scale * t1, scale * t2, scale * t3)
    }
    let (y0, y1, y2, y3) = (y + row.0 * outF, y + row.1 * outF, y + row.2 * outF, y + row.3 * outF)
    let fullOut = outF & ~15
    for c in stride(from: 0, to: fullOut, by: 16) {
        var (v0, v1, v2, v3) = (loadVector(y0 + c), loadVector(y1 + c), loadVector(y2 + c), loadVector(y3 + c))
        for q in 0..<r {
            let bv = loadVector(bT + q * outF + c)
            v0 = multiplyAdd(v0, Vector(repeating: u[q]), bv)
            v1 = multiplyAdd(v1, Vector(repeating: u[r + q]), bv)
            v2 = multiplyAdd(v2, Vector(repeating: u[2 * r + q]), bv)
            v3 = multiplyAdd(v3, Vector(repeating: u[3 * r + q]), bv)
        }
        if count > 3 { storeVector(v3, y3 + c) }
        if count > 2 { storeVector(v2, y2 + c) }
        if count > 1 { storeVector(v1, y1 + c) }
        storeVector(v0, y0 + c)
    }
    for j in 0..<count {
        let (yj, uj) = (y + rows[j] * outF, u + j * r)
        for o in fullOut..<outF {
            var value = yj[o]
            for q in 0..<r { value = multiplyAdd(value, uj[q], bT[q * outF + o]) }
            yj[o] = value
        }
    }
}

/// `y += alpha·x` over `count` floats, 16 lanes at a time.
@inline(__always) func addScaled(_ alpha: Float, _ x: UnsafePointer<Float>, to y: UnsafeMutablePointer<Float>, count: Int) {
    let factor = Vector(repeating: alpha)
    let full = count & ~15
    for i in stride(from: 0, to: full, by: 16) { storeVector(multiplyAdd(loadVector(y + i), factor, loadVector(x + i)), y + i) }
    for i in full..<count { y[i] = multiplyAdd(y[i], alpha, x[i]) }
}
