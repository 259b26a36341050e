// CPU GEMM in the Goto/BLIS structure: packed panels, cache blocking, a register-tiled SIMD micro-kernel.
//
//   jc: nc columns of C → pc: kc steps of k (B's kc×nc block packed once, shared by the threads)
//     → parts (row ranges, or panel ranges when C is wide), claimed by free threads
//       → ic: mc rows (A's mc×kc block packed by the part) → jr: NR-wide panel of B (L1/L2)
//         → ir: MR-tall panel of A → micro-kernel: an MR×NR tile in registers.
//
// Every element of C sums its k terms in the same order whatever the thread count (the split is over C, never
// over k), so results are bitwise identical for any LORA_THREADS. Block sizes were measured on a 2-core
// AVX-512 Xeon (48 KiB L1d, 2 MiB L2); the bench moved less than its noise for mc 64-256, kc 256-512. kc 768 keeps
// the Llama/GPT-2 hidden sizes (576, 768) in one block of k (no second pass over C for a 64-term tail): a
// smollm-135m training step ~2% faster on a 2-core AMD EPYC (32 KiB L1d, 1 MiB L2).
// Around that: a bias is added as tiles are stored, causal triangles skip dead tiles and terms, and outputs at most
// 16 wide (LoRA ranks) run on a kernel of their own.
// Typed operands: A and B may be bfloat16 or float16. They are converted to float32 as they are packed (a typed
// operand is always packed, never read in place), so the micro-kernel only ever sees floats and a bf16 weight costs
// no pass and no float32 copy of its own.

/// A matrix view with arbitrary strides: element (i, j) at `base[i·rowStride + j·colStride]`, of dtype float32,
/// bfloat16 or float16 (read as floats; only float32 matrices are written).
/// Transposes and the Cᵀ = Bᵀ·Aᵀ trick are stride swaps.
struct StridedMatrix {
    /// Element (0, 0): memory bound to Float for float32, to UInt16 for the 16-bit floats.
    let raw: UnsafeMutableRawPointer
    let dtype: DType
    let rowStride: Int, colStride: Int

    init(base: UnsafeMutablePointer<Float>, rowStride: Int, colStride: Int) {
        (raw, dtype, self.rowStride, self.colStride) = (UnsafeMutableRawPointer(base), .float32, rowStride, colStride)
    }

    init(raw: UnsafeMutableRawPointer, dtype: DType, rowStride: Int, colStride: Int) {
        (self.raw, self.dtype, self.rowStride, self.colStride) = (raw, dtype, rowStride, colStride)
    }

    var isFloat32: Bool { dtype == .float32 }
    /// The elements of a float32 matrix.
    var base: UnsafeMutablePointer<Float> { raw.assumingMemoryBound(to: Float.self) }
    /// The elements of a 16-bit float matrix.
    var halves: UnsafeMutablePointer<UInt16> { raw.assumingMemoryBound(to: UInt16.self) }
    var transposed: StridedMatrix { StridedMatrix(raw: raw, dtype: dtype, rowStride: colStride, colStride: rowStride) }
    @inline(__always) subscript(i: Int, j: Int) -> Float {
        get {
            if dtype == .float32 { return base[i * rowStride + j * colStride] }
            return widen(halves[i * rowStride + j * colStride], bfloat16: dtype == .bfloat16)
        }
        nonmutating set { base[i * rowStride + j * colStride] = newValue }
    }
}

enum PackedGEMM {
    /// Micro-tile: MR rows × NR columns = 8 × 2 SIMD16 accumulators (16 of AVX-512's 32 registers).
    static let mr = 8, nr = 32
    /// Cache blocks: A's mc×kc block in L2, B's kc×NR panel in L1/L2, B's kc×nc block in L2/L3.
    static let mc = 128, kc = 768, nc = 2048
    /// Below this many multiply-adds a GEMM runs on one thread: waking workers would cost more.
    static let parallelThreshold = 1 << 18

    /// C = alpha·A·B + beta·C (+ bias, n floats, on every row) for one matrix: A is m×k, B is k×n, C is m×n (views
    /// already transposed as needed). With a triangle, tiles it leaves unwanted are skipped and each tile runs only
    /// the terms it needs. `packedB`: all of B already packed (`packWhole`), used in place of packing it.
    static func multiply(m: Int, n: Int, k: Int, alpha: Float, a: StridedMatrix, b: StridedMatrix,
                         beta: Float, c: StridedMatrix, bias: UnsafePointer<Float>? = nil,
                         triangle: GEMM.Triangle? = nil, packedB: UnsafePointer<Float>? = nil, pool: ThreadPool?) {
        let threads = m * n * k >= parallelThreshold ? (pool?.threadCount ?? 1) : 1
        // A weight packed once (PackedWeight.swift): B's panels are ready for any number of rows, so every product
        // takes the panels path, A read in place where it can be.
        if let packedB {
            return multiplyByPanels(m: m, n: n, k: k, alpha: alpha, a: a, b: b, beta: beta, c: c, bias: bias,
                                    triangle: triangle, directA: a.colStride == 1 && a.isFloat32,
                                    threads: threads, pool: pool, packedB: packedB)
        }
        // Rank-wide outputs (LoRA's x·Aᵀ and dy·B) have a kernel of their own.
        if n <= 16 && a.colStride == 1 && triangle == nil && bias == nil {
            return narrow(m: m, n: n, k: k, alpha: alpha, a: a, b: b, beta: beta, c: c, pool: pool)
        }
        // Packing pays for itself through reuse. With a few panels of B (n ≤ 4·NR) each tile of A is used a few
        // times, and with a few tiles of A (m ≤ 4·MR) each panel of B: such operands are read where they lie
        // (reading A in place up to 4 panels instead of 1 took a gpt2-small LoRA step from ~235 to ~275 tokens/s).
        // A typed operand is always packed: packing is where it becomes float32.
        let directA = a.colStride == 1 && n <= 4 * nr && a.isFloat32
        let directB = b.colStride == 1 && m <= 4 * mr && b.isFloat32
        // Otherwise, when padding n up to NR wastes clearly more than padding m up to MR, compute Cᵀ = Bᵀ·Aᵀ (not
        // with a triangle or a bias, which are stated for C's rows and columns). Clearly: Cᵀ is stored an element
        // at a time, across rows (for GPT-2's LM head, 512×50257, a 1.001 gain in padding cost 1.4× in stores).
        if !directA && !directB && triangle == nil && bias == nil
            && efficiency(m: n, n: m) > 1.2 * efficiency(m: m, n: n) {
            return multiply(m: n, n: m, k: k, alpha: alpha, a: b.transposed, b: a.transposed,
                            beta: beta, c: c.transposed, pool: pool)
        }
        // A few rows against a transposed B (a decode step's x·Wᵀ): W read in place, xᵀ packed instead
        // (CPUBackend+GEMMFewRows.swift); the same bits as below. One row stays on the packed path, which read W
        // faster there (12.5 against 7.7 GFLOP/s at 1x576x576 with a core free).
        if m >= 2 && m <= fewRowsMax && b.rowStride == 1 && b.colStride != 1 && triangle == nil {
            return fewRows(m: m, n: n, k: k, alpha: alpha, a: a, b: b, beta: beta, c: c, bias: bias, pool: pool)
        }
        // Wider than tall (CPUBackend+GEMMPanels.swift), a row-major float32 A is read in place whatever n: packing it
        // cost more than it saved (2 threads, GFLOP/s: 512x576x576 156 -> 186, 512x576x1536 165 -> 192, 512x576x49152
        // 169 -> 200, 512x768x3072 195 -> 215; one thread ~2% faster too).
        if m < n && !directB {
            return multiplyByPanels(m: m, n: n, k: k, alpha: alpha, a: a, b: b, beta: beta, c: c, bias: bias,
                                    triangle: triangle, directA: a.colStride == 1 && a.isFloat32,
                                    threads: threads, pool: pool)
        }
        let kcMax = min(kc, k), ncMax = min(nc, roundUp(n, nr))
        let packedB = ThreadScratch.current(.shared, floats: kcMax * ncMax)
        // Parts are claimed by whichever thread is free, so a core slowed by another process costs only its
        // current part. Rows are split when C is taller than wide (each part packs its own A block);
        // otherwise groups of B panels, which all read one packing of the short A (packed per kc block,
        // split across threads like B: packed by every part, it cost a fifth of the multiply-adds' time).
        let splitRows = m >= n
        let shareA = !splitRows && !directA
        let packedAllA = shareA ? ThreadScratch.current(.sharedA, floats: roundUp(m, mr) * kcMax) : packedB
        let rowParts = threads == 1 ? 1 : max((m + mc - 1) / mc, min(4 * threads, (m + mr - 1) / mr))
        let rowsPerPart = roundUp((m + rowParts - 1) / rowParts, mr)

        for j0 in stride(from: 0, to: n, by: nc) {
            let ncBlock = min(nc, n - j0), panels = (ncBlock + nr - 1) / nr
            let panelParts = threads == 1 ? 1 : min(panels, 4 * threads)
            for p0 in stride(from: 0, to: k, by: kc) {
                let kcBlock = min(kc, k - p0)
                // beta and the bias apply once, in the first block of k.
                let (beta, bias) = p0 == 0 ? (beta, bias.map { $0 + j0 }) : (1, nil)
                // B's panels: packed (all of them, split across threads), or read in place (only a ragged
                // last panel is packed).
                let packFrom = directB ? panels - (ncBlock % nr == 0 ? 0 : 1) : 0
                let packParts = min(panelParts, threads, panels - packFrom)
                runParts(packParts, pool) { t in
                    let range = share(t, of: packParts, count: panels - packFrom)
                    packB(b, rows: p0..<p0 + kcBlock, firstColumn: j0, lastColumn: j0 + ncBlock,
                          panels: packFrom + range.lowerBound..<packFrom + range.upperBound, into: packedB)
                }
                if shareA {
                    let tiles = (m + mr - 1) / mr, aParts = min(threads, tiles)
                    runParts(aParts, pool) { t in
                        let range = share(t, of: aParts, count: tiles)
                        packA(a, rows: range.lowerBound * mr..<min(m, range.upperBound * mr), columns: p0..<p0 + kcBlock,
                              triangle: triangle, into: packedAllA + range.lowerBound * kcBlock * mr)
                    }
                }
                let bSource = directB
                    ? Panels(base: b.base + p0 * b.rowStride + j0, next: nr, lane: 1, step: b.rowStride,
                             packed: packedB, packedFrom: packFrom, kc: kcBlock, width: nr)
                    : Panels(packed: packedB, kc: kcBlock, width: nr)
                runParts(splitRows ? (m + rowsPerPart - 1) / rowsPerPart : panelParts, pool) { part in
                    let rows = splitRows ? part * rowsPerPart..<min(m, (part + 1) * rowsPerPart) : 0..<m
                    let panelRange = splitRows ? 0..<panels : share(part, of: panelParts, count: panels)
                    guard !rows.isEmpty, !panelRange.isEmpty else { return }
                    let scratch = ThreadScratch.current(.part, floats: mc * kcMax + mr * nr)
                    let (packedA, tile) = (scratch, scratch + mc * kcMax)
                    for i0 in stride(from: rows.lowerBound, to: rows.upperBound, by: mc) {
                        let mcBlock = min(mc, rows.upperBound - i0)
                        let tiles = (mcBlock + mr - 1) / mr
                        // A's tiles: packed (here, or once for all parts), or read in place (only a ragged last
                        // tile is packed).
                        let packFromTile = directA ? tiles - (mcBlock % mr == 0 ? 0 : 1) : 0
                        if !shareA {
                            packA(a, rows: i0 + packFromTile * mr..<i0 + mcBlock, columns: p0..<p0 + kcBlock,
                                  triangle: triangle, into: packedA + packFromTile * kcBlock * mr)
                        }
                        let aSource = shareA ? Panels(packed: packedAllA + (i0 / mr) * kcBlock * mr, kc: kcBlock, width: mr)
                            : directA
                            ? Panels(base: a.base + i0 * a.rowStride + p0, next: mr * a.rowStride, lane: a.rowStride,
                                     step: 1, packed: packedA, packedFrom: packFromTile, kc: kcBlock, width: mr)
                            : Panels(packed: packedA, kc: kcBlock, width: mr)
                        macroKernel(tiles: tiles, mcBlock: mcBlock, panels: panelRange, ncBlock: ncBlock,
                                    a: aSource, b: bSource, tile: tile, alpha: alpha, beta: beta, bias: bias,
                                    c: c, row: i0, column: j0, term: p0, k: k, triangle: triangle)
                    }
                }
            }
        }
    }

    /// Where the micro-kernel finds tile t of an operand: in place at `base + t·next`, element (lane ℓ, step p)
    /// at `ℓ·lane + p·step`; or, from tile `packedFrom` on, packed (lane 1, step `width`) in `packed`.
    struct Panels {
        let base: UnsafePointer<Float>, next: Int, lane: Int, step: Int
        let packed: UnsafePointer<Float>, packedFrom: Int, kc: Int, width: Int

        init(base: UnsafeMutablePointer<Float>, next: Int, lane: Int, step: Int,
             packed: UnsafeMutablePointer<Float>, packedFrom: Int, kc: Int, width: Int) {
            (self.base, self.next, self.lane, self.step) = (UnsafePointer(base), next, lane, step)
            (self.packed, self.packedFrom, self.kc, self.width) = (UnsafePointer(packed), packedFrom, kc, width)
        }

        /// All tiles packed.
        init(packed: UnsafeMutablePointer<Float>, kc: Int, width: Int) {
            self.init(base: packed, next: 0, lane: 0, step: 0, packed: packed, packedFrom: 0, kc: kc, width: width)
        }

        /// Every tile packed (`packedFrom` 0).
        var isPacked: Bool { packedFrom == 0 }

        @inline(__always) func tile(_ t: Int) -> (pointer: UnsafePointer<Float>, lane: Int, step: Int) {
            if t >= packedFrom { return (packed + t * kc * width, 1, width) }
            return (base + t * next, lane, step)
        }
    }

    /// The fraction of computed tile entries that are real (not padding).
    static func efficiency(m: Int, n: Int) -> Double {
        Double(m) / Double(roundUp(m, mr)) * Double(n) / Double(roundUp(n, nr))
    }

    /// For one block of A's tiles against a range of B's panels: C(block) = alpha·A·B + beta·C(block) (+ bias,
    /// which starts at the block's first column).
    /// The block holds terms `term..<term + a.kc` of k; a triangle narrows them per tile.
    /// Never inlined: inside a large caller the compiler stops inlining the vector loads of the micro-kernel
    /// (seen as a 10× slowdown on one thread, where the parts' closure is inlined into `multiply`).
    @inline(never)
    static func macroKernel(tiles: Int, mcBlock: Int, panels: Range<Int>, ncBlock: Int, a: Panels, b: Panels,
                            tile: UnsafeMutablePointer<Float>, alpha: Float, beta: Float, bias: UnsafePointer<Float>?,
                            c: StridedMatrix, row: Int, column: Int, term: Int, k: Int, triangle: GEMM.Triangle?) {
        for q in panels {
            let width = min(nr, ncBlock - q * nr)
            for s in 0..<tiles {
                let height = min(mr, mcBlock - s * mr)
                // This tile's terms, relative to the block (all of them without a triangle).
                var (first, count) = (0, a.kc)
                if let triangle {
                    let rows = row + s * mr..<row + s * mr + height
                    if triangle.skips(rows: rows, columns: column + q * nr..<column + q * nr + width) { continue }
                    let terms = triangle.terms(rows: rows, k: k).clamped(to: term..<term + a.kc)
                    (first, count) = (terms.lowerBound - term, terms.count)
                }
                let (aTile, bTile) = (a.tile(s), b.tile(q))
                let whole = height == mr && width == nr && c.colStride == 1
                // A whole tile of a row-major C is merged straight from the registers.
                let tileBias = bias.map { $0 + q * nr }
                let output = whole
                    ? Output(c: c.base + (row + s * mr) * c.rowStride + column + q * nr, ldc: c.rowStride,
                             alpha: alpha, beta: beta, bias: tileBias)
                    : Output(c: tile, ldc: nr, alpha: 1, beta: 0, bias: nil)
                let (pa, pb) = (aTile.pointer + first * aTile.step, bTile.pointer + first * bTile.step)
                if a.isPacked && b.isPacked {
                    // The common case, with constant strides so the loop compiles to pure loads and FMAs.
                    microKernel(kc: count, a: pa, aLane: 1, aStep: mr, b: pb, bStep: nr, output: output)
                } else {
                    microKernel(kc: count, a: pa, aLane: aTile.lane, aStep: aTile.step, b: pb, bStep: bTile.step,
                                output: output)
                }
                if !whole {
                    store(tile: tile, rows: height, columns: width, alpha: alpha, beta: beta, bias: tileBias,
                          c: c, row: row + s * mr, column: column + q * nr)
                }
            }
        }
    }

    /// Where a micro-kernel puts its tile: `c[i·ldc + j] = alpha·tile + beta·c + bias[j]` (beta = 0 ignores c).
    struct Output {
        let c: UnsafeMutablePointer<Float>, ldc: Int, alpha: Float, beta: Float
        let bias: UnsafePointer<Float>?

        @inline(__always) func merge(_ t0: Vector, _ t1: Vector, row i: Int) {
            let dst = c + i * ldc
            let (va, vb) = (Vector(repeating: alpha), Vector(repeating: beta))
            var (r0, r1) = (t0 * va, t1 * va)
            if beta != 0 { (r0, r1) = (multiplyAdd(r0, vb, loadVector(dst)), multiplyAdd(r1, vb, loadVector(dst + 16))) }
            if let bias { (r0, r1) = (r0 + loadVector(bias), r1 + loadVector(bias + 16)) }
            storeVector(r0, dst)
            storeVector(r1, dst + 16)
        }
    }

    /// The MR×NR tile Σₚ a[p, 0..<MR]ᵀ · b[p, 0..<NR], merged into `output`; a's lane i of step p is at
    /// `a[i·aLane + p·aStep]`, b's row p at `b[p·bStep]`.
    /// Sixteen named accumulators keep the tile in registers; a is broadcast one element at a time.
    @inline(__always)
    static func microKernel(kc: Int, a: UnsafePointer<Float>, aLane: Int, aStep: Int,
                            b: UnsafePointer<Float>, bStep: Int, output: Output) {
        var c00 = Vector(), c01 = Vector(), c10 = Vector(), c11 = Vector()
        var c20 = Vector(), c21 = Vector(), c30 = Vector(), c31 = Vector()
        var c40 = Vector(), c41 = Vector(), c50 = Vector(), c51 = Vector()
        var c60 = Vector(), c61 = Vector(), c70 = Vector(), c71 = Vector()
        var pa = a, pb = b
        for _ in 0..<kc {
            let b0 = loadVector(pb), b1 = loadVector(pb + 16)
            var x = Vector(repeating: pa[0])
            c00 = multiplyAdd(c00, x, b0); c01 = multiplyAdd(c01, x, b1)
            x = Vector(repeating: pa[1 * aLane])
            c10 = multiplyAdd(c10, x, b0); c11 = multiplyAdd(c11, x, b1)
            x = Vector(repeating: pa[2 * aLane])
            c20 = multiplyAdd(c20, x, b0); c21 = multiplyAdd(c21, x, b1)
            x = Vector(repeating: pa[3 * aLane])
            c30 = multiplyAdd(c30, x, b0); c31 = multiplyAdd(c31, x, b1)
            x = Vector(repeating: pa[4 * aLane])
            c40 = multiplyAdd(c40, x, b0); c41 = multiplyAdd(c41, x, b1)
            x = Vector(repeating: pa[5 * aLane])
            c50 = multiplyAdd(c50, x, b0); c51 = multiplyAdd(c51, x, b1)
            x = Vector(repeating: pa[6 * aLane])
            c60 = multiplyAdd(c60, x, b0); c61 = multiplyAdd(c61, x, b1)
            x = Vector(repeating: pa[7 * aLane])
            c70 = multiplyAdd(c70, x, b0); c71 = multiplyAdd(c71, x, b1)
            pa += aStep
            pb += bStep
        }
        output.merge(c00, c01, row: 0); output.merge(c10, c11, row: 1)
        output.merge(c20, c21, row: 2); output.merge(c30, c31, row: 3)
        output.merge(c40, c41, row: 4); output.merge(c50, c51, row: 5)
        output.merge(c60, c61, row: 6); output.merge(c70, c71, row: 7)
    }

    /// C[row.., column..] = alpha·tile + beta·C + bias for the `rows`×`columns` valid part; beta = 0 ignores C.
    @inline(__always)
    static func store(tile: UnsafeMutablePointer<Float>, rows: Int, columns: Int, alpha: Float, beta: Float,
                      bias: UnsafePointer<Float>?, c: StridedMatrix, row: Int, column: Int) {
        if c.colStride == 1 && columns == nr {
            for i in 0..<rows {
                Output(c: c.base + (row + i) * c.rowStride + column, ldc: 0, alpha: alpha, beta: beta, bias: bias)
                    .merge(loadVector(tile + i * nr), loadVector(tile + i * nr + 16), row: 0)
            }
            return
        }
        for i in 0..<rows {
            for j in 0..<columns {
                let t = alpha * tile[i * nr + j]
                let merged = beta == 0 ? t : multiplyAdd(t, beta, c[row + i, column + j])
                c[row + i, column + j] = merged + (bias?[j] ?? 0)
            }
        }
    }
}

/// Part `t` of `parts` near-equal contiguous shares of `0..<count`.
@inline(__always) func share(_ t: Int, of parts: Int, count: Int) -> Range<Int> {
    (count * t / parts)..<(count * (t + 1) / parts)
}

@inline(__always) func roundUp(_ x: Int, _ multiple: Int) -> Int { (x + multiple - 1) / multiple * multiple }

/// Runs `parts` parts on the pool, or inline when there is one part or no pool.
@inline(__always) func runParts(_ parts: Int, _ pool: ThreadPool?, _ body: (Int) -> Void) {
    if parts == 1 || pool == nil { for t in 0..<parts { body(t) } } else { pool!.run(parts: parts, body) }
}

extension CPUBackend {
    public func gemm(_ op: GEMM) throws {
        try requireOwned(op)
        let (m, n, k) = (op.m, op.n, op.k)
        let (a, b, c) = (bytes(op.a.tensor), bytes(op.b.tensor), elements(op.c.tensor))
        let (typeA, typeB) = (op.a.tensor.dtype, op.b.tensor.dtype)
        let (alpha, beta) = (op.alpha, op.beta)
        let bias = op.bias.map { UnsafePointer(elements($0)) }
        let pool = self.pool
        let packedB = packedPanels(op)
        // op(A) is m×k: stored [m, k] (row stride ld) or, transposed, [k, m].
        let (offsets, strides) = ((op.a.offset, op.b.offset, op.c.offset),
                                  (op.a.batchStride, op.b.batchStride, op.c.batchStride))
        let (lds, transposes) = ((op.a.ld, op.b.ld, op.c.ld), (op.transposeA, op.transposeB))
        func views(_ batch: Int) -> (StridedMatrix, StridedMatrix, StridedMatrix) {
            let av = StridedMatrix(raw: a + (offsets.0 + batch * strides.0) * typeA.size, dtype: typeA,
                                   rowStride: lds.0, colStride: 1)
            let bv = StridedMatrix(raw: b + (offsets.1 + batch * strides.1) * typeB.size, dtype: typeB,
                                   rowStride: lds.1, colStride: 1)
            let cv = StridedMatrix(base: c + offsets.2 + batch * strides.2, rowStride: lds.2, colStride: 1)
            return (transposes.0 ? av.transposed : av, transposes.1 ? bv.transposed : bv, cv)
        }
        // Many small matrices (attention heads): one whole matrix per part. Otherwise each matrix uses the pool.
        if op.batch > 1 && m * n * k < 1 << 22 {
            let batches = op.batch
            runParts(min(batches, pool.threadCount), pool) { t in
                for batch in share(t, of: min(batches, pool.threadCount), count: batches) {
                    let (av, bv, cv) = views(batch)
                    PackedGEMM.multiply(m: m, n: n, k: k, alpha: alpha, a: av, b: bv, beta: beta, c: cv,
                                        bias: bias, triangle: op.triangle, pool: nil)
                }
            }
            return
        }
        for batch in 0..<op.batch {
            let (av, bv, cv) = views(batch)
            PackedGEMM.multiply(m: m, n: n, k: k, alpha: alpha, a: av, b: bv, beta: beta, c: cv,
                                bias: bias, triangle: op.triangle, packedB: packedB, pool: pool)
        }
    }

    /// B's packed copy (`packWeight`), when this product reads all of the packed weight, once, the way it was packed.
    private func packedPanels(_ op: GEMM) -> UnsafePointer<Float>? {
        guard op.batch == 1, op.triangle == nil, let packing = op.b.tensor.packing, packing.transposed == op.transposeB,
              op.b.offset == 0 else { return nil }
        // The stored weight: [n, k] read transposed, or [k, n]; whole rows apart.
        let shape = op.b.tensor.shape, (rows, columns) = op.transposeB ? (op.n, op.k) : (op.k, op.n)
        guard shape.count == 2, shape[0] == rows, shape[1] == columns, op.b.ld == columns else { return nil }
        return UnsafePointer(elements(packing.panels))
    }
}
