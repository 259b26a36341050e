// CPU multi-LoRA (MultiLoRA.swift): rows are grouped by adapter, and each group runs the single-adapter path's two
// packed GEMMs (u = x·A_aᵀ on the narrow kernel for ranks ≤ 16, then y += s_a·u·B_aᵀ), so every adapter's A and B
// are read once per batch however its rows are spread. A group that is one contiguous range of rows (SGMV: a
// prefill segment) is read and written in place; scattered rows (BGMV: decode, sequences of different adapters
// interleaved) are gathered into scratch first and their update added back row by row.
// Parallel: large groups split their GEMMs over the pool; many small ones (decode) run a whole group per part.
// Rows never overlap between groups, so parts write disjoint rows of y.

extension CPUBackend {
    public func multiLoRA(_ op: MultiLoRA) throws {
        try requireOwned(op)
        let groups = op.activeGroups
        guard !groups.isEmpty else { return }
        let (inF, outF) = (op.inFeatures, op.outFeatures)
        let work = groups.map { group in
            group.ranges.reduce(0) { $0 + $1.count } * op.slots.ranks[group.adapter] * (inF + outF)
        }
        let pool = self.pool
        if groups.count > 1 && work.max()! < PackedGEMM.parallelThreshold {
            // Too small for a GEMM to split: whole groups per part instead (or all on this thread when tiny).
            let parts = work.reduce(0, +) >= PackedGEMM.parallelThreshold ? groups.count : 1
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
        // A_a [r, in] (row stride in) read as Aᵀ; B_a [out, r] (row stride R) read as Bᵀ.
        let aT = StridedMatrix(base: elements(op.a) + adapter * maxRank * inF, rowStride: 1, colStride: inF)
        let bT = StridedMatrix(base: elements(op.b) + adapter * outF * maxRank, rowStride: 1, colStride: maxRank)
        let n = ranges.reduce(0) { $0 + $1.count }
        if ranges.count == 1 {
            let first = ranges[0].lowerBound
            let u = ThreadScratch.current(.rows, floats: n * r)
            let uView = StridedMatrix(base: u, rowStride: r, colStride: 1)
            PackedGEMM.multiply(m: n, n: r, k: inF, alpha: 1, a: StridedMatrix(base: x + first * inF, rowStride: inF, colStride: 1),
                                b: aT, beta: 0, c: uView, pool: pool)
            PackedGEMM.multiply(m: n, n: outF, k: r, alpha: scale, a: uView, b: bT, beta: 1,
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
        PackedGEMM.multiply(m: n, n: outF, k: r, alpha: scale, a: uView, b: bT, beta: 0,
                            c: StridedMatrix(base: update, rowStride: outF, colStride: 1), pool: pool)
        row = 0
        for range in ranges {
            let (source, destination) = (update + row * outF, y + range.lowerBound * outF)
            for j in 0..<range.count * outF { destination[j] += source[j] }
            row += range.count
        }
    }
}
