// The CPU GEMM's kernel for outputs at most 16 wide (LoRA's x·Aᵀ and dy·B at ranks up to 16), beside the packed
// Goto/BLIS path of CPUBackend+GEMM.swift, which would waste most of an 8×32 tile's multiply-adds there.

extension PackedGEMM {
    /// C = alpha·A·B + beta·C for n ≤ 16 with a row-major A: LoRA's x·Aᵀ and dy·B, n = rank. An 8×32 tile would
    /// waste 3/4 of its multiply-adds at rank 8; here each 8-row tile is one 16-lane accumulator per row, A read in
    /// place (a typed A: the tile's rows converted first), B packed once as [k, 16] (zero past n). Rows are split
    /// over the pool; each row sums k in order.
    static func narrow(m: Int, n: Int, k: Int, alpha: Float, a: StridedMatrix, b: StridedMatrix,
                       beta: Float, c: StridedMatrix, pool: ThreadPool?) {
        let packed = ThreadScratch.current(.shared, floats: k * 16)
        for p in 0..<k {
            for j in 0..<16 { packed[p * 16 + j] = j < n ? b[p, j] : 0 }
        }
        let tiles = (m + mr - 1) / mr
        let parts = m * n * k >= parallelThreshold ? min(tiles, 4 * (pool?.threadCount ?? 1)) : 1
        runParts(parts, pool) { part in
            let converted = a.isFloat32 ? nil : ThreadScratch.current(.part, floats: mr * k)
            for s in share(part, of: parts, count: tiles) {
                let rows = s * mr..<min(m, s * mr + mr)
                var (tileA, lda) = (a.base + rows.lowerBound * a.rowStride, a.rowStride)
                if let converted {
                    for i in rows.indices {
                        ElementRows.widen(a.raw + i * a.rowStride * a.dtype.size, a.dtype,
                                          into: converted + (i - rows.lowerBound) * k, count: k)
                    }
                    (tileA, lda) = (converted, k)
                }
                narrowTile(rows: rows, n: n, k: k, alpha: alpha, a: tileA, lda: lda, b: packed, beta: beta, c: c)
            }
        }
    }

    /// Rows `rows` (at most MR) of the narrow product; A's row i of the tile at `a + i·lda`. A row past the end reads
    /// the last row again (and is dropped).
    @inline(never)
    static func narrowTile(rows: Range<Int>, n: Int, k: Int, alpha: Float, a: UnsafeMutablePointer<Float>, lda: Int,
                           b: UnsafeMutablePointer<Float>, beta: Float, c: StridedMatrix) {
        @inline(__always) func row(_ i: Int) -> UnsafeMutablePointer<Float> {
            a + min(i, rows.count - 1) * lda
        }
        let (r0, r1, r2, r3, r4, r5, r6, r7) = (row(0), row(1), row(2), row(3), row(4), row(5), row(6), row(7))
        var (c0, c1, c2, c3, c4, c5, c6, c7) = (Vector(), Vector(), Vector(), Vector(), Vector(), Vector(), Vector(), Vector())
        for p in 0..<k {
            let bv = loadVector(b + p * 16)
            c0 = multiplyAdd(c0, Vector(repeating: r0[p]), bv); c1 = multiplyAdd(c1, Vector(repeating: r1[p]), bv)
            c2 = multiplyAdd(c2, Vector(repeating: r2[p]), bv); c3 = multiplyAdd(c3, Vector(repeating: r3[p]), bv)
            c4 = multiplyAdd(c4, Vector(repeating: r4[p]), bv); c5 = multiplyAdd(c5, Vector(repeating: r5[p]), bv)
            c6 = multiplyAdd(c6, Vector(repeating: r6[p]), bv); c7 = multiplyAdd(c7, Vector(repeating: r7[p]), bv)
        }
        @inline(__always) func put(_ acc: Vector, _ i: Int) {
            guard i < rows.count else { return }
            for j in 0..<n {
                let t = alpha * acc[j]
                c[rows.lowerBound + i, j] = beta == 0 ? t : multiplyAdd(t, beta, c[rows.lowerBound + i, j])
            }
        }
        put(c0, 0); put(c1, 1); put(c2, 2); put(c3, 3); put(c4, 4); put(c5, 5); put(c6, 6); put(c7, 7)
    }
}
