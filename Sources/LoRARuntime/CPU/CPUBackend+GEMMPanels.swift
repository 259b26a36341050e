// The CPU GEMM's path for C wider than tall (CPUBackend+GEMM.swift): parts own ranges of B's panels across all of
// n, each packing its own panels (or reading a weight's panels packed once, PackedWeight.swift), while the short A
// is read in place or packed once for all of them.

extension PackedGEMM {
    /// Most panels a part of `multiplyByPanels` owns: its packed panels (kc·NR floats each, 96 KiB at kc 768)
    /// stay in L2 next to A's mc×kc block.
    static let panelsPerPart = 8
    /// Most floats of A packed whole, for every block of k at once (8 MiB: a layer's activations, not the LM
    /// head's logits gradient).
    static let wholeA = 1 << 21

    /// `multiply` for C wider than tall (m < n), B packed (not read in place). Parts own ranges of B's panels
    /// across all of n and pack their own panels, block of k by block of k, into their thread's scratch, so no
    /// part waits for another's packing. The short A, which every part reads, is read in place (`directA`, a
    /// row-major float32 A), or else packed once and shared: all of it in one step before the parts when it is
    /// small (then the whole product is two pool runs), else one block of k at a time (two runs per block). With
    /// `packedB` (all of B packed already, `packWhole`), parts read their panels there. Each element of C still sums
    /// its blocks of k in order, each block in the micro-kernel's order, so the bits are those of any other split.
    static func multiplyByPanels(m: Int, n: Int, k: Int, alpha: Float, a: StridedMatrix, b: StridedMatrix,
                                 beta: Float, c: StridedMatrix, bias: UnsafePointer<Float>?, triangle: GEMM.Triangle?,
                                 directA: Bool, threads: Int, pool: ThreadPool?, packedB: UnsafePointer<Float>? = nil) {
        let kcMax = min(kc, k), panels = (n + nr - 1) / nr, blocks = (k + kc - 1) / kc
        // One panel per part on several threads: whichever thread finishes first waits at most one panel's time
        // at the end (with 4 parts per thread, 576-wide outputs ran at ~185 GFLOP/s on 2 cores; one panel each,
        // ~200). On one thread, groups of panels reuse each block of A more.
        let parts = threads == 1 ? (panels + panelsPerPart - 1) / panelsPerPart : panels
        let perPart = (panels + parts - 1) / parts
        let (tilesA, heightA) = ((m + mr - 1) / mr, roundUp(m, mr))
        let whole = !directA && heightA * k <= wholeA
        let packedAllA = directA ? nil : ThreadScratch.current(.sharedA, floats: heightA * (whole ? k : kcMax))
        // A row-major B (dy·W in backward) packed one panel at a time would be read 128 bytes per row, a page or
        // more apart: slow from memory, where a frozen weight usually is (the same products ran at ~183 GFLOP/s
        // in a training step against ~200 for x·Wᵀ). When A is packed whole, B is too, a row at a time, beside it.
        let widthB = roundUp(n, nr)
        let wholeB = packedB == nil && (whole || directA) && b.isFloat32 && b.colStride == 1 && widthB * k <= wholeA
        let packedAllB = packedB.map { UnsafeMutablePointer(mutating: $0) }
            ?? (wholeB ? ThreadScratch.current(.shared, floats: widthB * k) : nil)

        /// A's columns `p0..<p0 + kcBlock` for every block in `blocks`, packed at `heightA·p0` (whole) or 0;
        /// with `wholeB`, all of B too.
        func packShared(_ blocks: Range<Int>) {
            guard packedAllA != nil || wholeB else { return }
            let sharing = wholeB ? threads : min(threads, tilesA)
            runParts(sharing, pool) { t in
                if let packedAllA {
                    let range = share(t, of: sharing, count: tilesA)
                    for block in blocks where !range.isEmpty {
                        let p0 = block * kc, kcBlock = min(kc, k - p0)
                        packA(a, rows: range.lowerBound * mr..<min(m, range.upperBound * mr), columns: p0..<p0 + kcBlock,
                              triangle: triangle,
                              into: packedAllA + (whole ? heightA * p0 : 0) + range.lowerBound * kcBlock * mr)
                    }
                }
                if wholeB, let packedAllB {
                    packRowsB(b, n: n, k: k, rows: share(t, of: sharing, count: k), into: packedAllB)
                }
            }
        }

        /// Every part over the blocks `blocks` of k (A's already packed, when shared).
        func compute(_ blocks: Range<Int>) {
            runParts(parts, pool) { part in
                let owned = share(part, of: parts, count: panels)
                guard !owned.isEmpty else { return }
                let scratch = ThreadScratch.current(.part, floats: mc * kcMax + perPart * kcMax * nr + mr * nr)
                let (packedA, packedB) = (scratch, scratch + mc * kcMax)
                let tile = packedB + perPart * kcMax * nr
                let (column, width) = (owned.lowerBound * nr, min(n, owned.upperBound * nr) - owned.lowerBound * nr)
                for block in blocks {
                    let p0 = block * kc, kcBlock = min(kc, k - p0)
                    // beta and the bias apply once, in the first block of k.
                    let (beta, bias) = p0 == 0 ? (beta, bias.map { $0 + column }) : (1, nil)
                    let bSource: Panels
                    if let packedAllB {
                        bSource = Panels(packed: packedAllB + widthB * p0 + owned.lowerBound * kcBlock * nr,
                                         kc: kcBlock, width: nr)
                    } else {
                        packB(b, rows: p0..<p0 + kcBlock, firstColumn: column, lastColumn: column + width,
                              panels: 0..<owned.count, into: packedB)
                        bSource = Panels(packed: packedB, kc: kcBlock, width: nr)
                    }
                    let sharedA = packedAllA.map { $0 + (whole ? heightA * p0 : 0) }
                    for i0 in stride(from: 0, to: m, by: mc) {
                        let mcBlock = min(mc, m - i0), tiles = (mcBlock + mr - 1) / mr
                        let aSource: Panels
                        if let sharedA {
                            aSource = Panels(packed: sharedA + (i0 / mr) * kcBlock * mr, kc: kcBlock, width: mr)
                        } else {
                            // A read in place; only a ragged last tile is packed.
                            let packFromTile = tiles - (mcBlock % mr == 0 ? 0 : 1)
                            packA(a, rows: i0 + packFromTile * mr..<i0 + mcBlock, columns: p0..<p0 + kcBlock,
                                  triangle: triangle, into: packedA + packFromTile * kcBlock * mr)
                            aSource = Panels(base: a.base + i0 * a.rowStride + p0, next: mr * a.rowStride, lane: a.rowStride,
                                             step: 1, packed: packedA, packedFrom: packFromTile, kc: kcBlock, width: mr)
                        }
                        macroKernel(tiles: tiles, mcBlock: mcBlock, panels: 0..<owned.count, ncBlock: width,
                                    a: aSource, b: bSource, tile: tile, alpha: alpha, beta: beta, bias: bias,
                                    c: c, row: i0, column: column, term: p0, k: k, triangle: triangle)
                    }
                }
            }
        }

        if whole || directA {
            packShared(0..<blocks)
            compute(0..<blocks)
        } else {
            for block in 0..<blocks {
                packShared(block..<block + 1)
                compute(block..<block + 1)
            }
        }
    }

    /// Rows `rows` of a row-major float32 B `[k, n]`, whole rows, into `dst` laid out as every block of k packed
    /// for `multiplyByPanels`: the block from term p0 at `roundUp(n, NR)·p0`, its panel q at `q·kcBlock·NR`, term p
    /// at `(p − p0)·NR` in it; zero past column n.
    static func packRowsB(_ b: StridedMatrix, n: Int, k: Int, rows: Range<Int>, into dst: UnsafeMutablePointer<Float>) {
        let (width, full) = (roundUp(n, nr), n / nr)
        for p in rows {
            let p0 = p / kc * kc, kcBlock = min(kc, k - p0)
            let src = b.base + p * b.rowStride
            let out = dst + width * p0 + (p - p0) * nr
            for q in 0..<full {
                storeVector(loadVector(src + q * nr), out + q * kcBlock * nr)
                storeVector(loadVector(src + q * nr + 16), out + q * kcBlock * nr + 16)
            }
            if full * nr < n {
                let last = out + full * kcBlock * nr
                for j in 0..<nr { last[j] = full * nr + j < n ? src[full * nr + j] : 0 }
            }
        }
    }
}
