// CPU causal attention: each (sequence, head) runs start to finish on one thread (heads are claimed by free
// threads), so its scores stay in L1/L2 from the product through the softmax to the next product. The products
// use the packed GEMM single-threaded, with the causal triangles; the row passes are the softmax op's.
// Per head (T queries, Tk keys, D wide): scores 4·T·Tk bytes (64 KiB at T = Tk = 128).
// Packed rows (segment starts) take the sliding window's path: the products still cover the causal triangle, and
// each row's softmax runs over its band of keys (from its segment start), leaving the other entries 0, so the second
// products add nothing across examples.
// Grouped-query backward runs each (sequence, kv head) on one thread, its query heads in order, so the sums into
// dK and dV need no locks and come out the same bits on any number of threads.

extension CPUBackend {
    public func attention(_ op: Attention) throws {
        try requireOwned(op)
        let s = op.shape
        let (t, tk, d) = (s.queries, s.keys, s.headDim)
        let (q, k, v, context) = (view(op.query), view(op.key), view(op.value), view(op.context))
        let probabilities = elements(op.probabilities)
        let visible = { (row: Int) in s.visibleCount(query: row) }
        let keys = visibleKeys(s, op.segmentStarts)
        pool.run(parts: s.sequences * s.heads) { part in
            let (b, h) = (part / s.heads, part % s.heads)
            let kvh = s.kvHead(h)
            let p = probabilities + part * t * tk
            let scores = StridedMatrix(base: p, rowStride: tk, colStride: 1)
            PackedGEMM.multiply(m: t, n: tk, k: d, alpha: 1, a: q(b, h), b: k(b, kvh).transposed, beta: 0, c: scores,
                                triangle: .lowerC(offset: s.cached), pool: nil)
            if s.window == nil && op.segmentStarts == nil {
                Self.softmaxRows(p, p, rows: 0..<t, cols: tk, scale: s.scale, visibleCount: visible)
            } else {
                for i in 0..<t {
                    Self.softmaxBandRow(p + i * tk, p + i * tk, keys: keys(b, i), cols: tk, scale: s.scale)
                }
            }
            PackedGEMM.multiply(m: t, n: d, k: tk, alpha: 1, a: scores, b: v(b, kvh), beta: 0, c: context(b, h),
                                triangle: .lowerA(offset: s.cached), pool: nil)
        }
    }

    public func attentionBackward(_ op: AttentionBackward) throws {
        try requireOwned(op)
        let s = op.shape
        let (t, tk, d, group) = (s.queries, s.keys, s.headDim, s.groupSize)
        let (q, k, v) = (view(op.query), view(op.key), view(op.value))
        let (dContext, dq, dk, dv) = (view(op.dContext), view(op.dQuery), view(op.dKey), view(op.dValue))
        let probabilities = elements(op.probabilities)
        let keys = visibleKeys(s, op.segmentStarts)
        pool.run(parts: s.sequences * s.kvHeads) { part in
            let (b, kvh) = (part / s.kvHeads, part % s.kvHeads)
            let ds = ThreadScratch.current(.scores, floats: t * tk)
            let dsm = StridedMatrix(base: ds, rowStride: tk, colStride: 1)
            for h in kvh * group..<(kvh + 1) * group {
                // The group's first query head writes dK and dV, the others add to them.
                let beta: Float = h == kvh * group ? 0 : 1
                let p = probabilities + (b * s.heads + h) * t * tk
                let pm = StridedMatrix(base: p, rowStride: tk, colStride: 1)
                // dP = dContext·Vᵀ (only where P is not masked), dV (+)= Pᵀ·dContext.
                PackedGEMM.multiply(m: t, n: tk, k: d, alpha: 1, a: dContext(b, h), b: v(b, kvh).transposed, beta: 0,
                                    c: dsm, triangle: .lowerC(offset: s.cached), pool: nil)
                PackedGEMM.multiply(m: tk, n: d, k: t, alpha: 1, a: pm.transposed, b: dContext(b, h), beta: beta,
                                    c: dv(b, kvh), triangle: .upperA(offset: s.cached), pool: nil)
                for r in 0..<t {
                    Self.softmaxGradientBandRow(p + r * tk, ds + r * tk, ds + r * tk, keys: keys(b, r),
                                                cols: tk, scale: s.scale)
                }
                // dQ = dS·K, dK (+)= dSᵀ·Q.
                PackedGEMM.multiply(m: t, n: d, k: tk, alpha: 1, a: dsm, b: k(b, kvh), beta: 0, c: dq(b, h),
                                    triangle: .lowerA(offset: s.cached), pool: nil)
                PackedGEMM.multiply(m: tk, n: d, k: t, alpha: 1, a: dsm.transposed, b: q(b, h), beta: beta, c: dk(b, kvh),
                                    triangle: .upperA(offset: s.cached), pool: nil)
            }
        }
    }

    /// The keys query i of sequence b sees: the causal (and window) range, from its segment start where there are starts.
    private func visibleKeys(_ s: AttentionShape, _ starts: Tensor?) -> (Int, Int) -> Range<Int> {
        guard let starts else { return { _, i in s.visibleKeys(query: i) } }
        let values = int32s(starts)
        return { b, i in SegmentStarts.keys(s.visibleKeys(query: i), from: Int(values[b * s.queries + i])) }
    }

    /// The matrix of sequence b, head h of a multi-head operand.
    private func view(_ x: HeadOperand) -> (Int, Int) -> StridedMatrix {
        let base = elements(x.tensor)
        return { b, h in StridedMatrix(base: base + x.start(b, h), rowStride: x.ld, colStride: 1) }
    }
}
