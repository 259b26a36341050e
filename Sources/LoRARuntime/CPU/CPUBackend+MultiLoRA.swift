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
        if total < PackedGEMM.parallelThreshold || groups.count >= 2 * pool.threadCount
            || (groups.count > 1 && work.max()! < PackedGEMM.parallelThreshold) {
            // Whole groups per part (all on this thread when the batch is small).
            let parts = total < PackedGEMM.parallelThreshold ? 1 : groups.count
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
        if n < Self.multiLoRARowByRow {
            let u = ThreadScratch.current(.rows, floats: r)
            for range in ranges {
                for i in range {
                    let (xi, yi) = (x + i * inF, y + i * outF)
                    for q in 0..<r { u[q] = scale * dotProduct(xi, a + q * inF, count: inF) }
                    for q in 0..<r { addScaled(u[q], bT + q * outF, to: yi, count: outF) }
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

/// `y += alpha·x` over `count` floats, 16 lanes at a time.
@inline(__always) func addScaled(_ alpha: Float, _ x: UnsafePointer<Float>, to y: UnsafeMutablePointer<Float>, count: Int) {
    let factor = Vector(repeating: alpha)
    let full = count & ~15
    for i in stride(from: 0, to: full, by: 16) { storeVector(multiplyAdd(loadVector(y + i), factor, loadVector(x + i)), y + i) }
    for i in full..<count { y[i] = multiplyAdd(y[i], alpha, x[i]) }
}
