// CPU GEMM: the plain, correct version. Row i of C accumulates rank-1 updates a[i,p]·B[p,:], so the inner
// loop runs over contiguous memory; a transposed B is first packed to [k, n] so that stays true.

extension CPUBackend {
    public func gemm(_ op: GEMM) throws {
        try requireOwned(op)
        let (m, n, k) = (op.m, op.n, op.k)
        var packed = op.transposeB ? [Float](repeating: 0, count: k * n) : []
        packed.withUnsafeMutableBufferPointer { packedB in
            for batch in 0..<op.batch {
                let a = elements(op.a.tensor) + op.a.offset + batch * op.a.batchStride
                var b = UnsafePointer(elements(op.b.tensor) + op.b.offset + batch * op.b.batchStride)
                var ldb = op.b.ld
                let c = elements(op.c.tensor) + op.c.offset + batch * op.c.batchStride
                if op.transposeB {
                    // B is stored [n, k]; pack op(B) = Bᵀ as [k, n].
                    let dst = packedB.baseAddress!
                    for j in 0..<n { for p in 0..<k { dst[p * n + j] = b[j * op.b.ld + p] } }
                    (b, ldb) = (UnsafePointer(dst), n)
                }
                for i in 0..<m {
                    let row = c + i * op.c.ld
                    if op.beta == 0 {
                        row.update(repeating: 0, count: n)
                    } else if op.beta != 1 {
                        for j in 0..<n { row[j] *= op.beta }
                    }
                    for p in 0..<k {
                        let aip = op.alpha * (op.transposeA ? a[p * op.a.ld + i] : a[i * op.a.ld + p])
                        let bRow = b + p * ldb
                        for j in 0..<n { row[j] += aip * bRow[j] }
                    }
                }
            }
        }
    }
}
