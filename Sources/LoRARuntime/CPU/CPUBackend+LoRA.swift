// CPU LoRA low-rank path: u = x·Aᵀ [N, r], then y += s·u·Bᵀ [N, out], as two packed GEMMs on the pool.
// Both are the skinny shapes the GEMM reads in place (n = r ≤ 32 with row-major x; k = r), so nothing of x
// is copied.

extension CPUBackend {
    public func loraProject(_ op: LoRAProjection) throws {
        try requireOwned(op)
        let (x, a, b, y) = (elements(op.x), elements(op.a), elements(op.b), elements(op.y))
        let (rows, inF, outF, r) = (op.rows, op.inFeatures, op.outFeatures, op.rank)
        let u = op.u.map { elements($0) } ?? UnsafeMutablePointer<Float>.allocate(capacity: rows * r)
        defer { if op.u == nil { u.deallocate() } }
        let uView = StridedMatrix(base: u, rowStride: r, colStride: 1)
        // u [N, r] = x [N, in] · Aᵀ, A stored [r, in].
        PackedGEMM.multiply(m: rows, n: r, k: inF, alpha: 1,
                            a: StridedMatrix(base: x, rowStride: inF, colStride: 1),
                            b: StridedMatrix(base: a, rowStride: 1, colStride: inF),
                            beta: 0, c: uView, pool: pool)
        // y [N, out] += s · u · Bᵀ, B stored [out, r].
        PackedGEMM.multiply(m: rows, n: outF, k: r, alpha: op.scale, a: uView,
                            b: StridedMatrix(base: b, rowStride: 1, colStride: r),
                            beta: 1, c: StridedMatrix(base: y, rowStride: outF, colStride: 1), pool: pool)
    }
}
