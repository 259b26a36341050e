// Packing for the CPU GEMM (CPUBackend+GEMM.swift): B's blocks as NR-wide k-major panels and A's blocks as MR-tall
// k-major panels, zero-padded at the edges so the micro-kernel never branches; causal triangles pack only the terms
// a panel's rows use. bfloat16/float16 operands are converted to float32 as they are copied.

extension PackedGEMM {
    /// Packs B's rows `rows` × columns `firstColumn..<lastColumn` as NR-wide panels, k-major:
    /// panel q holds element (p, jj) at `q·kc·NR + p·NR + jj`, zero beyond the last column.
    @inline(never)
    static func packB(_ b: StridedMatrix, rows: Range<Int>, firstColumn: Int, lastColumn: Int,
                      panels: Range<Int>, into dst: UnsafeMutablePointer<Float>) {
        guard b.isFloat32 else {
            return packTypedB(b, rows: rows, firstColumn: firstColumn, lastColumn: lastColumn, panels: panels, into: dst)
        }
        let kcBlock = rows.count
        for q in panels {
            let j0 = firstColumn + q * nr, width = min(nr, lastColumn - j0)
            let out = dst + q * kcBlock * nr
            if b.colStride == 1 && width == nr {
                for p in 0..<kcBlock {
                    let src = b.base + (rows.lowerBound + p) * b.rowStride + j0
                    storeVector(loadVector(src), out + p * nr)
                    storeVector(loadVector(src + 16), out + p * nr + 16)
                }
                continue
            }
            if b.rowStride == 1 && width >= 8 {
                // Bᵀ stored (x·Wᵀ with W [out, in], dy·Wᵀ, a tied LM head, attention's keys): eight read streams per
                // 8 columns, 8×8 blocks transposed in registers (eight 32-byte loads, 24 shuffles, eight 32-byte
                // stores), the last k steps of a ragged block one 32-byte store each; a ragged panel's last columns
                // (under 8) one by one. A pure copy: the panels are the same. (A decode step's keys, 17-48 of them,
                // always end in a ragged panel, which element by element was half of its attention's time.)
                if width < nr { out.update(repeating: 0, count: kcBlock * nr) }
                let full = kcBlock & ~7, groups = width & ~7
                for jj in groups..<width {
                    let src = b.base + (j0 + jj) * b.colStride + rows.lowerBound
                    for p in 0..<kcBlock { out[p * nr + jj] = src[p] }
                }
                for g in stride(from: 0, to: groups, by: 8) {
                    let (cs, src) = (b.colStride, b.base + (j0 + g) * b.colStride + rows.lowerBound)
                    for p in stride(from: 0, to: full, by: 8) {
                        transpose8x8(src + p, stride: cs, into: out + p * nr + g, stride: nr)
                    }
                    for p in full..<kcBlock {
                        let v = SIMD8<Float>(src[p], src[cs + p], src[2 * cs + p], src[3 * cs + p],
                                             src[4 * cs + p], src[5 * cs + p], src[6 * cs + p], src[7 * cs + p])
                        UnsafeMutableRawPointer(out + p * nr + g).storeBytes(of: v, as: SIMD8<Float>.self)
                    }
                }
                continue
            }
            if width < nr { (out).update(repeating: 0, count: kcBlock * nr) }
            // Walk the source along its contiguous axis.
            for jj in 0..<width {
                let src = b.base + (j0 + jj) * b.colStride + rows.lowerBound * b.rowStride
                for p in 0..<kcBlock { out[p * nr + jj] = src[p * b.rowStride] }
            }
        }
    }

    /// Packs A's rows `rows` × columns `columns` as MR-tall panels, k-major:
    /// panel s holds element (ii, p) at `s·kc·MR + p·MR + ii`, zero beyond the last row. With a triangle, each
    /// panel only over the terms its rows need (the rest are never read): half of attention's transposed products.
    @inline(never)
    static func packA(_ a: StridedMatrix, rows: Range<Int>, columns: Range<Int>, triangle: GEMM.Triangle? = nil,
                      into dst: UnsafeMutablePointer<Float>) {
        guard a.isFloat32 else { return packTypedA(a, rows: rows, columns: columns, triangle: triangle, into: dst) }
        let kcBlock = columns.count
        for s in 0..<(rows.count + mr - 1) / mr {
            let i0 = rows.lowerBound + s * mr, height = min(mr, rows.upperBound - i0)
            let out = dst + s * kcBlock * mr
            if height < mr { out.update(repeating: 0, count: kcBlock * mr) }
            // The terms to pack, relative to the block.
            let needed = (triangle?.terms(rows: i0..<i0 + height, k: columns.upperBound).clamped(to: columns) ?? columns)
            let terms = needed.lowerBound - columns.lowerBound..<needed.upperBound - columns.lowerBound
            if a.colStride == 1 && height == mr {
                // Row-major A: eight read streams, one 32-byte store per k step.
                let (rs, src) = (a.rowStride, a.base + i0 * a.rowStride + columns.lowerBound)
                for p in terms {
                    let v = SIMD8<Float>(src[p], src[rs + p], src[2 * rs + p], src[3 * rs + p],
                                         src[4 * rs + p], src[5 * rs + p], src[6 * rs + p], src[7 * rs + p])
                    UnsafeMutableRawPointer(out + p * mr).storeBytes(of: v, as: SIMD8<Float>.self)
                }
            } else if a.rowStride == 1 && height == mr {
                // Aᵀ stored: each p copies MR contiguous elements, as one 32-byte load and store.
                for p in terms {
                    let src = UnsafeRawPointer(a.base + i0 + (columns.lowerBound + p) * a.colStride)
                    UnsafeMutableRawPointer(out + p * mr).storeBytes(of: src.loadUnaligned(as: SIMD8<Float>.self),
                                                                     as: SIMD8<Float>.self)
                }
            } else if a.rowStride == 1 {
                for p in terms {
                    let src = a.base + i0 + (columns.lowerBound + p) * a.colStride
                    for ii in 0..<height { out[p * mr + ii] = src[ii] }
                }
            } else {
                for ii in 0..<height {
                    let src = a.base + (i0 + ii) * a.rowStride + columns.lowerBound * a.colStride
                    for p in terms { out[p * mr + ii] = src[p * a.colStride] }
                }
            }
        }
    }

    /// `packB` for a bfloat16 or float16 B: the same panels, each element converted to float as it is copied.
    @inline(never)
    static func packTypedB(_ b: StridedMatrix, rows: Range<Int>, firstColumn: Int, lastColumn: Int,
                           panels: Range<Int>, into dst: UnsafeMutablePointer<Float>) {
        let (kcBlock, bits, bf16) = (rows.count, b.halves, b.dtype == .bfloat16)
        for q in panels {
            let j0 = firstColumn + q * nr, width = min(nr, lastColumn - j0)
            let out = dst + q * kcBlock * nr
            if b.colStride == 1 && width == nr {
                for p in 0..<kcBlock {
                    let src = UnsafeRawPointer(bits + (rows.lowerBound + p) * b.rowStride + j0)
                    storeVector(widen(src.loadUnaligned(as: SIMD16<UInt16>.self), bfloat16: bf16), out + p * nr)
                    storeVector(widen(src.loadUnaligned(fromByteOffset: 32, as: SIMD16<UInt16>.self), bfloat16: bf16),
                                out + p * nr + 16)
                }
                continue
            }
            if b.rowStride == 1 && width == nr {
                // Bᵀ stored (x·Wᵀ with W [out, in]): eight read streams per 8 columns, as packB.
                for g in stride(from: 0, to: nr, by: 8) {
                    let (cs, src) = (b.colStride, bits + (j0 + g) * b.colStride + rows.lowerBound)
                    for p in 0..<kcBlock {
                        let v = SIMD8<UInt16>(src[p], src[cs + p], src[2 * cs + p], src[3 * cs + p],
                                              src[4 * cs + p], src[5 * cs + p], src[6 * cs + p], src[7 * cs + p])
                        UnsafeMutableRawPointer(out + p * nr + g).storeBytes(of: widen(v, bfloat16: bf16), as: SIMD8<Float>.self)
                    }
                }
                continue
            }
            if width < nr { out.update(repeating: 0, count: kcBlock * nr) }
            for jj in 0..<width {
                let src = bits + (j0 + jj) * b.colStride + rows.lowerBound * b.rowStride
                for p in 0..<kcBlock { out[p * nr + jj] = widen(src[p * b.rowStride], bfloat16: bf16) }
            }
        }
    }

    /// `packA` for a bfloat16 or float16 A: the same panels, each element converted to float as it is copied.
    @inline(never)
    static func packTypedA(_ a: StridedMatrix, rows: Range<Int>, columns: Range<Int>, triangle: GEMM.Triangle?,
                           into dst: UnsafeMutablePointer<Float>) {
        let (kcBlock, bits, bf16) = (columns.count, a.halves, a.dtype == .bfloat16)
        for s in 0..<(rows.count + mr - 1) / mr {
            let i0 = rows.lowerBound + s * mr, height = min(mr, rows.upperBound - i0)
            let out = dst + s * kcBlock * mr
            if height < mr { out.update(repeating: 0, count: kcBlock * mr) }
            let needed = (triangle?.terms(rows: i0..<i0 + height, k: columns.upperBound).clamped(to: columns) ?? columns)
            let terms = needed.lowerBound - columns.lowerBound..<needed.upperBound - columns.lowerBound
            if a.colStride == 1 && height == mr {
                let (rs, src) = (a.rowStride, bits + i0 * a.rowStride + columns.lowerBound)
                for p in terms {
                    let v = SIMD8<UInt16>(src[p], src[rs + p], src[2 * rs + p], src[3 * rs + p],
                                          src[4 * rs + p], src[5 * rs + p], src[6 * rs + p], src[7 * rs + p])
                    UnsafeMutableRawPointer(out + p * mr).storeBytes(of: widen(v, bfloat16: bf16), as: SIMD8<Float>.self)
                }
            } else if a.rowStride == 1 && height == mr {
                for p in terms {
                    let src = UnsafeRawPointer(bits + i0 + (columns.lowerBound + p) * a.colStride)
                    UnsafeMutableRawPointer(out + p * mr).storeBytes(
                        of: widen(src.loadUnaligned(as: SIMD8<UInt16>.self), bfloat16: bf16), as: SIMD8<Float>.self)
                }
            } else {
                for ii in 0..<height {
                    let src = bits + (i0 + ii) * a.rowStride + columns.lowerBound * a.colStride
                    for p in terms { out[p * mr + ii] = widen(src[p * a.colStride], bfloat16: bf16) }
                }
            }
        }
    }
}

/// Writes the transpose of the 8×8 block at `src` (rows `srcStride` apart) to `dst` (rows `dstStride` apart):
/// dst[u·dstStride + t] = src[t·srcStride + u]. Unpack pairs, then pairs of pairs, then 128-bit halves (AVX's
/// unpcklps/shufps/vperm2f128 pattern; LLVM turns the constant-index element moves into those shuffles).
@inline(__always)
func transpose8x8(_ src: UnsafePointer<Float>, stride srcStride: Int, into dst: UnsafeMutablePointer<Float>, stride dstStride: Int) {
    typealias V = SIMD8<Float>
    @inline(__always) func row(_ t: Int) -> V { UnsafeRawPointer(src + t * srcStride).loadUnaligned(as: V.self) }
    let (r0, r1, r2, r3, r4, r5, r6, r7) = (row(0), row(1), row(2), row(3), row(4), row(5), row(6), row(7))
    // Within each 128-bit half: interleave rows 2i and 2i+1.
    @inline(__always) func lo(_ a: V, _ b: V) -> V { V(a[0], b[0], a[1], b[1], a[4], b[4], a[5], b[5]) }
    @inline(__always) func hi(_ a: V, _ b: V) -> V { V(a[2], b[2], a[3], b[3], a[6], b[6], a[7], b[7]) }
    let (t0, t1, t2, t3) = (lo(r0, r1), hi(r0, r1), lo(r2, r3), hi(r2, r3))
    let (t4, t5, t6, t7) = (lo(r4, r5), hi(r4, r5), lo(r6, r7), hi(r6, r7))
    // Pairs of pairs: four rows' element u (low half) and u + 4 (high half).
    @inline(__always) func even(_ a: V, _ b: V) -> V { V(a[0], a[1], b[0], b[1], a[4], a[5], b[4], b[5]) }
    @inline(__always) func odd(_ a: V, _ b: V) -> V { V(a[2], a[3], b[2], b[3], a[6], a[7], b[6], b[7]) }
    let (s0, s1, s2, s3) = (even(t0, t2), odd(t0, t2), even(t1, t3), odd(t1, t3))
    let (s4, s5, s6, s7) = (even(t4, t6), odd(t4, t6), even(t5, t7), odd(t5, t7))
    // Halves: rows 0-3 from s, rows 4-7 from s + 4.
    @inline(__always) func store(_ u: Int, _ v: V) { UnsafeMutableRawPointer(dst + u * dstStride).storeBytes(of: v, as: V.self) }
    store(0, V(lowHalf: s0.lowHalf, highHalf: s4.lowHalf)); store(4, V(lowHalf: s0.highHalf, highHalf: s4.highHalf))
    store(1, V(lowHalf: s1.lowHalf, highHalf: s5.lowHalf)); store(5, V(lowHalf: s1.highHalf, highHalf: s5.highHalf))
    store(2, V(lowHalf: s2.lowHalf, highHalf: s6.lowHalf)); store(6, V(lowHalf: s2.highHalf, highHalf: s6.highHalf))
    store(3, V(lowHalf: s3.lowHalf, highHalf: s7.lowHalf)); store(7, V(lowHalf: s3.highHalf, highHalf: s7.highHalf))
}

extension PackedGEMM {
    /// All of B (k×n) packed as `multiplyByPanels` reads a whole packed B, `roundUp(n, NR)·k` floats: the block of k
    /// from term p0 at `roundUp(n, NR)·p0`, its panel q at `q·kcBlock·NR` (`packB`'s layout for the block), zero past
    /// column n.
    /// The panels are split over the pool's threads.
    static func packWhole(_ b: StridedMatrix, n: Int, k: Int, into dst: UnsafeMutablePointer<Float>, pool: ThreadPool?) {
        let (width, panels) = (roundUp(n, nr), (n + nr - 1) / nr)
        let parts = n * k >= parallelThreshold ? min(panels, pool?.threadCount ?? 1) : 1
        runParts(parts, pool) { t in
            let range = share(t, of: parts, count: panels)
            for p0 in stride(from: 0, to: k, by: kc) {
                let kcBlock = min(kc, k - p0)
                packB(b, rows: p0..<p0 + kcBlock, firstColumn: 0, lastColumn: n, panels: range, into: dst + width * p0)
            }
        }
    }
}

extension CPUBackend {
    /// float32 weights more than 16 wide (op(B)'s columns) are packed: 16-bit ones would double in size as floats
    /// and are widened as they are packed anyway, and rank-wide ones run on the narrow kernel, which reads B in place.
    public func packWeight(_ weight: Tensor, transposed: Bool) throws -> Bool {
        try requireOwned("packWeight", weight)
        guard weight.rank == 2 else {
            throw LoRAError.shapeMismatch("packWeight: a weight must be a matrix, got \(describe(weight.shape))")
        }
        let (n, k) = transposed ? (weight.shape[0], weight.shape[1]) : (weight.shape[1], weight.shape[0])
        guard weight.dtype == .float32, n > 16 else { return false }
        let panels = try empty([roundUp(n, PackedGEMM.nr) * k], dtype: .float32)
        let stored = StridedMatrix(base: elements(weight), rowStride: weight.shape[1], colStride: 1)
        PackedGEMM.packWhole(transposed ? stored.transposed : stored, n: n, k: k, into: elements(panels), pool: pool)
        weight.packing = WeightPacking(transposed: transposed, panels: panels)
        return true
    }
}
