// CPU causal attention: each (sequence, head) runs start to finish on one thread (heads are claimed by free
// threads), so its scores stay in L1/L2 from the product through the softmax to the next product. The products
// use the packed GEMM single-threaded, with the causal triangles; the row passes are the softmax op's.
// Per head (T queries, Tk keys, D wide): scores 4·T·Tk bytes (64 KiB at T = Tk = 128).

extension CPUBackend {
    public func attention(_ op: Attention) throws {
        try requireOwned(op)
        let s = op.shape
        let (t, tk, d) = (s.queries, s.keys, s.headDim)
        let (q, k, v, context) = (view(op.query), view(op.key), view(op.value), view(op.context))
        let probabilities = elements(op.probabilities)
        let visible = { (row: Int) in min(tk, row + s.cached + 1) }
        pool.run(parts: s.sequences * s.heads) { part in
            let (b, h) = (part / s.heads, part % s.heads)
            let p = probabilities + part * t * tk
            let scores = StridedMatrix(base: p, rowStride: tk, colStride: 1)
            PackedGEMM.multiply(m: t, n: tk, k: d, alpha: 1, a: q(b, h), b: k(b, h).transposed, beta: 0, c: scores,
                                triangle: .lowerC(offset: s.cached), pool: nil)
            Self.softmaxRows(p, p, rows: 0..<t, cols: tk, scale: s.scale, visibleCount: visible)
            PackedGEMM.multiply(m: t, n: d, k: tk, alpha: 1, a: scores, b: v(b, h), beta: 0, c: context(b, h),
                                triangle: .lowerA(offset: s.cached), pool: nil)
        }
    }

    public func attentionBackward(_ op: AttentionBackward) throws {
        try requireOwned(op)
        let s = op.shape
        let (t, tk, d) = (s.queries, s.keys, s.headDim)
        let (q, k, v) = (view(op.query), view(op.key), view(op.value))
        let (dContext, dq, dk, dv) = (view(op.dContext), view(op.dQuery), view(op.dKey), view(op.dValue))
        let probabilities = elements(op.probabilities)
        pool.run(parts: s.sequences * s.heads) { part in
            let (b, h) = (part / s.heads, part % s.heads)
            let p = probabilities + part * t * tk
            let pm = StridedMatrix(base: p, rowStride: tk, colStride: 1)
            let ds = ThreadScratch.current(.scores, floats: t * tk)
            let dsm = StridedMatrix(base: ds, rowStride: tk, colStride: 1)
            // dP = dContext·Vᵀ (only where P is not masked), dV = Pᵀ·dContext.
            PackedGEMM.multiply(m: t, n: tk, k: d, alpha: 1, a: dContext(b, h), b: v(b, h).transposed, beta: 0, c: dsm,
                                triangle: .lowerC(offset: s.cached), pool: nil)
            PackedGEMM.multiply(m: tk, n: d, k: t, alpha: 1, a: pm.transposed, b: dContext(b, h), beta: 0, c: dv(b, h),
                                triangle: .upperA(offset: s.cached), pool: nil)
            for r in 0..<t {
                Self.softmaxGradientRow(p + r * tk, ds + r * tk, ds + r * tk, visible: min(tk, r + s.cached + 1),
                                        cols: tk, scale: s.scale)
            }
            // dQ = dS·K, dK = dSᵀ·Q.
            PackedGEMM.multiply(m: t, n: d, k: tk, alpha: 1, a: dsm, b: k(b, h), beta: 0, c: dq(b, h),
                                triangle: .lowerA(offset: s.cached), pool: nil)
            PackedGEMM.multiply(m: tk, n: d, k: t, alpha: 1, a: dsm.transposed, b: q(b, h), beta: 0, c: dk(b, h),
                                triangle: .upperA(offset: s.cached), pool: nil)
        }
    }

    /// The matrix of sequence b, head h of a multi-head operand.
    private func view(_ x: HeadOperand) -> (Int, Int) -> StridedMatrix {
        let base = elements(x.tensor)
        return { b, h in StridedMatrix(base: base + x.start(b, h), rowStride: x.ld, colStride: 1) }
    }
}
