// The CPU GEMM's kernel for a few rows against a transposed B: a decode step's y = x·Wᵀ, x [m ≤ 16, k], W [n, k]
// row-major (B = Wᵀ, so b.rowStride == 1), beside the packed Goto/BLIS path of CPUBackend+GEMM.swift. A weight
// packed once for generation (PackedWeight.swift) skips this kernel: its panels stream faster than W's rows do here.
//
// The packed path would copy W into NR-wide k-major panels on every call (a transpose: W's columns become rows)
// and use each panel for at most two 8-row tiles of A: for 16 rows the packing was ~40% of a decode step's GEMM
// time. Here the transpose moves to x instead, which is small: xᵀ is packed once as [k, L] (L = 16 or 8 lanes, row i
// of x in lane i, zero past m), and W is read where it lies. A tile is Cᵀ's 16 columns × L rows: an accumulator of
// L lanes per row of W; step p broadcasts W[j, p] and multiplies it into xᵀ's row p. The tile sweeps the terms twice,
// 8 rows of W at a time: 8 read streams keep the multiply-adds busy (8 independent chains) and stream W from memory
// faster than 16 did (Zen 5, 2 threads: 16x576x1536 ~335 → ~378 GFLOP/s, the 113 MB LM head 179-194 → 195).
// bfloat16/float16 and ragged groups of W's rows are first widened or copied, a chunk of k at a time, into a small
// float buffer read the same way.
//
// Exactness: every element of C gets the packed path's sequence of operations. Per block of kc terms (the same kc),
// an accumulator starts at +0 and takes one fused multiply-add per term in order (fma(W, x, acc) and fma(x, W, acc)
// are the same number); then C = alpha·acc (+ beta·C in the first block, + C after) (+ bias in the first block).
// The packed path adds a missing bias as +0 where it stores a tile element by element (a ragged last panel of NR
// columns, or a C with column stride ≠ 1), turning a −0 into +0; so does this one, for the same columns. Results are
// therefore bitwise those of the packed path, for any m and any thread count.

extension PackedGEMM {
    /// Most rows of A the few-rows kernel takes (one 16-lane vector).
    static let fewRowsMax = 16
    /// Rows of W (columns of C) per tile.
    static let fewRowsGroup = 16
    /// Terms of k staged at a time for a typed or ragged group: 16 rows × 256 floats = 16 KiB, in L1.
    static let fewRowsChunk = 256

    /// C = alpha·A·B + beta·C (+ bias) for m ≤ 16 with B = Wᵀ stored row-major [n, k] (`b.rowStride == 1`), no
    /// triangle: bitwise the packed path's result.
    static func fewRows(m: Int, n: Int, k: Int, alpha: Float, a: StridedMatrix, b: StridedMatrix,
                        beta: Float, c: StridedMatrix, bias: UnsafePointer<Float>?, pool: ThreadPool?) {
        precondition(m <= fewRowsMax && b.rowStride == 1, "fewRows: m \(m) > \(fewRowsMax) or B not transposed")
        let lanes = m <= 8 ? 8 : 16
        let xt = ThreadScratch.current(.sharedA, floats: k * lanes)
        packTransposed(a, m: m, k: k, lanes: lanes, into: xt)
        let groups = (n + fewRowsGroup - 1) / fewRowsGroup
        let threads = m * n * k >= parallelThreshold ? (pool?.threadCount ?? 1) : 1
        // One group per part: whichever thread is free claims the next (a core slowed by another process costs
        // only its current group).
        let parts = threads == 1 ? 1 : groups
        // Columns the packed path stores element by element (adding a missing bias as +0): its ragged last panel.
        let elementwiseFrom = c.colStride == 1 ? n / nr * nr : 0
        let (xtPointer, w) = (UnsafePointer(xt), b)
        runParts(parts, pool) { part in
            let scratch = ThreadScratch.current(.part, floats: fewRowsGroup * fewRowsChunk + 2 * fewRowsGroup * 16)
            let (staged, tile) = (scratch, scratch + fewRowsGroup * fewRowsChunk)
            let rowTile = tile + fewRowsGroup * 16
            for g in share(part, of: parts, count: groups) {
                let j0 = g * fewRowsGroup, width = min(fewRowsGroup, n - j0)
                // W's rows read in place: float32 and a whole group.
                let direct = w.isFloat32 && width == fewRowsGroup
                for p0 in stride(from: 0, to: k, by: kc) {
                    let kcBlock = min(kc, k - p0)
                    for q0 in stride(from: 0, to: kcBlock, by: direct ? kcBlock : fewRowsChunk) {
                        let count = min(kcBlock - q0, direct ? kcBlock : fewRowsChunk)
                        let x = xtPointer + (p0 + q0) * lanes
                        let (rows, ld): (UnsafePointer<Float>, Int)
                        if direct {
                            (rows, ld) = (UnsafePointer(w.base + j0 * w.colStride + p0 + q0), w.colStride)
                        } else {
                            stage(w, rows: j0..<j0 + width, terms: p0 + q0..<p0 + q0 + count, into: staged)
                            (rows, ld) = (UnsafePointer(staged), count)
                        }
                        if lanes == 16 {
                            fewRowsTile16(count: count, x: x, w: rows, ldw: ld, tile: tile, accumulate: q0 > 0)
                        } else {
                            fewRowsTile8(count: count, x: x, w: rows, ldw: ld, tile: tile, accumulate: q0 > 0)
                        }
                    }
                    // beta and the bias apply once, in the first block of k.
                    let (blockBeta, blockBias) = p0 == 0 ? (beta, bias) : (1, nil)
                    if width == fewRowsGroup && j0 + fewRowsGroup <= elementwiseFrom {
                        // Back to C's rows through registers, merged as the packed path merges a whole tile.
                        for ib in stride(from: 0, to: lanes, by: 8) {
                            for jb in stride(from: 0, to: 16, by: 8) {
                                transpose8x8(tile + jb * 16 + ib, stride: 16, into: rowTile + ib * 16 + jb, stride: 16)
                            }
                        }
                        let (va, vb) = (Vector(repeating: alpha), Vector(repeating: blockBeta))
                        for i in 0..<m {
                            let dst = c.base + i * c.rowStride + j0
                            var r = loadVector(rowTile + i * 16) * va
                            if blockBeta != 0 { r = multiplyAdd(r, vb, loadVector(dst)) }
                            if let blockBias { r = r + loadVector(blockBias + j0) }
                            storeVector(r, dst)
                        }
                        continue
                    }
                    for jj in 0..<width {
                        let j = j0 + jj, elementwise = j >= elementwiseFrom
                        for i in 0..<m {
                            let t = alpha * tile[jj * 16 + i]
                            var r = blockBeta == 0 ? t : multiplyAdd(t, blockBeta, c[i, j])
                            if let blockBias { r = r + blockBias[j] } else if elementwise { r = r + 0 }
                            c[i, j] = r
                        }
                    }
                }
            }
        }
    }

    /// A's m×k as xᵀ [k, lanes]: element (i, p) at `p·lanes + i`, zero for i ≥ m; typed A widened.
    static func packTransposed(_ a: StridedMatrix, m: Int, k: Int, lanes: Int, into dst: UnsafeMutablePointer<Float>) {
        if m < lanes {
            for p in 0..<k { (dst + p * lanes + m).update(repeating: 0, count: lanes - m) }
        }
        var first = 0
        if a.isFloat32 && a.colStride == 1 {
            // 8×8 blocks transposed in registers, then the ragged rows and terms one by one.
            let full = k & ~7
            for i0 in stride(from: 0, to: m & ~7, by: 8) {
                for p in stride(from: 0, to: full, by: 8) {
                    transpose8x8(a.base + i0 * a.rowStride + p, stride: a.rowStride, into: dst + p * lanes + i0, stride: lanes)
                }
                for i in i0..<i0 + 8 { for p in full..<k { dst[p * lanes + i] = a.base[i * a.rowStride + p] } }
            }
            first = m & ~7
        }
        for i in first..<m {
            for p in 0..<k { dst[p * lanes + i] = a[i, p] }
        }
    }

    /// W's rows `rows` (at most 16) over `terms` as floats into `dst` [16, terms.count], rows past the last a copy
    /// of it (their results are dropped).
    static func stage(_ w: StridedMatrix, rows: Range<Int>, terms: Range<Int>, into dst: UnsafeMutablePointer<Float>) {
        let count = terms.count
        for jj in 0..<fewRowsGroup {
            let j = min(rows.lowerBound + jj, rows.upperBound - 1)
            ElementRows.widen(w.raw + (j * w.colStride + terms.lowerBound) * w.dtype.size, w.dtype,
                              into: dst + jj * count, count: count)
        }
    }

    /// Cᵀ's 16 columns × 16 rows over `count` terms into `tile` (column j's lanes at `j·16`), starting from `tile`'s
    /// contents (`accumulate`) or zero: accumulator j += W[j, p]·xᵀ[p] for p in order, W's row j at `w + j·ldw`.
    @inline(never)
    static func fewRowsTile16(count: Int, x: UnsafePointer<Float>, w: UnsafePointer<Float>, ldw: Int,
                              tile: UnsafeMutablePointer<Float>, accumulate: Bool) {
        fewRowsTile(SIMD16<Float>.self, count: count, x: x, w: w, ldw: ldw, tile: tile, accumulate: accumulate)
    }

    /// `fewRowsTile16` with 8 lanes (m ≤ 8): the same number of multiply-adds per cycle on AVX-512 and AVX2.
    @inline(never)
    static func fewRowsTile8(count: Int, x: UnsafePointer<Float>, w: UnsafePointer<Float>, ldw: Int,
                             tile: UnsafeMutablePointer<Float>, accumulate: Bool) {
        fewRowsTile(SIMD8<Float>.self, count: count, x: x, w: w, ldw: ldw, tile: tile, accumulate: accumulate)
    }

    @inline(__always)
    static func fewRowsTile<V: SIMD>(_: V.Type, count: Int, x: UnsafePointer<Float>, w: UnsafePointer<Float>, ldw: Int,
                                     tile: UnsafeMutablePointer<Float>, accumulate: Bool) where V.Scalar == Float {
        let lanes = V.scalarCount
        @inline(__always) func load(_ j: Int) -> V {
            accumulate ? UnsafeRawPointer(tile + j * 16).loadUnaligned(as: V.self) : V()
        }
        @inline(__always) func fma(_ acc: V, _ s: Float, _ v: V) -> V {
            #if LORA_FMA || arch(arm64)
            return acc.addingProduct(V(repeating: s), v)
            #else
            return acc + V(repeating: s) * v
            #endif
        }
        @inline(__always) func put(_ acc: V, _ j: Int) {
            UnsafeMutableRawPointer(tile + j * 16).storeBytes(of: acc, as: V.self)
        }
        // Two sweeps over the terms, 8 rows of W each: 8 read streams at a time, not 16.
        for half in stride(from: 0, to: 16, by: 8) {
            let wh = w + half * ldw
            var (c0, c1, c2, c3, c4, c5, c6, c7) = (load(half), load(half + 1), load(half + 2), load(half + 3),
                                                    load(half + 4), load(half + 5), load(half + 6), load(half + 7))
            // Row pointers computed once: indexed by p alone, the loop needs no overflow checks.
            let (w0, w1, w2, w3, w4, w5, w6, w7) = (wh, wh + ldw, wh + 2 * ldw, wh + 3 * ldw,
                                                    wh + 4 * ldw, wh + 5 * ldw, wh + 6 * ldw, wh + 7 * ldw)
            var px = x
            for p in 0..<count {
                let v = UnsafeRawPointer(px).loadUnaligned(as: V.self)
                c0 = fma(c0, w0[p], v); c1 = fma(c1, w1[p], v); c2 = fma(c2, w2[p], v); c3 = fma(c3, w3[p], v)
                c4 = fma(c4, w4[p], v); c5 = fma(c5, w5[p], v); c6 = fma(c6, w6[p], v); c7 = fma(c7, w7[p], v)
                px += lanes
            }
            put(c0, half); put(c1, half + 1); put(c2, half + 2); put(c3, half + 3)
            put(c4, half + 4); put(c5, half + 5); put(c6, half + 6); put(c7, half + 7)
        }
    }
}
