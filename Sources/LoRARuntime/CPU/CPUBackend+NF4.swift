// NF4 on the CPU: the quantized GEMM, which dequantizes W into the packed B panels of the Goto/BLIS GEMM
// (CPUBackend+GEMM.swift) as it packs them, and the full dequantization. Layout and formula: NF4.swift.
//
// The GEMM splits C by panels of NR columns (and, when there are few panels, by row ranges too); each part
// dequantizes its own panels, one block of k at a time, into its thread's scratch (kc·NR floats per panel), then
// runs the float GEMM's macro-kernel over them with A read in place. No float copy of W exists beyond those panels.
// Each element of C sums its terms in the order the float GEMM does (blocks of kc, the micro-kernel's order within
// a block; n ≤ 16 without a bias: the narrow kernel), so the result is bitwise the float GEMM's on the dequantized W.
//
// Dequantization: a table of 256 pairs gives a byte's two code-book values in one 8-byte load; each block's stretch
// is then multiplied by its absmax, 16 lanes at a time (each product rounded once: exactly `map[q]·absmax`). A
// double-quantized absmax is `nestedMap[c]·scale` rounded, then `+ offset` rounded: two statements (Swift never
// contracts them into an FMA). Elements of a bfloat16 or float16 weight are then rounded to it and widened back,
// a second pass over the decoded stretch (Convert's rules); float32 elements skip it (one test per stretch).

/// Raw pointers into an `NF4Weight` on the CPU, and its decoding.
struct NF4Source {
    let codes: UnsafePointer<UInt8>
    /// Per byte value, its two elements' code-book values (high nibble first) as one 8-byte pair (see `pairs`).
    let pairs: UnsafePointer<UInt64>
    /// log2(blocksize).
    let shift: Int
    /// float32 absmax per block, or nil with double quantization.
    let absmax: UnsafePointer<Float>?
    /// Double quantization: absmax codes, the 256-entry map, per-group scales, offset, group size (and its log2
    /// when a power of two, else -1).
    let absmaxCodes: UnsafePointer<UInt8>?, nestedMap: UnsafePointer<Float>?, scales: UnsafePointer<Float>?
    let offset: Float, nestedBlocksize: Int, nestedShift: Int
    /// The dtype decoded elements are rounded to (float32: none).
    let rounding: DType

    /// `pairs` must hold 256 values and outlive the source.
    init(_ weight: NF4Weight, rounding: DType, on backend: CPUBackend, pairs: UnsafeMutablePointer<UInt64>) {
        self.rounding = rounding
        codes = UnsafePointer(backend.bytes(weight.codes).assumingMemoryBound(to: UInt8.self))
        let map = backend.elements(weight.map)
        for byte in 0..<256 {
            pairs[byte] = UInt64(map[byte >> 4].bitPattern) | UInt64(map[byte & 15].bitPattern) << 32
        }
        self.pairs = UnsafePointer(pairs)
        shift = weight.blocksize.trailingZeroBitCount
        switch weight.absmax {
        case .float32(let a):
            absmax = UnsafePointer(backend.elements(a))
            (absmaxCodes, nestedMap, scales, offset, nestedBlocksize, nestedShift) = (nil, nil, nil, 0, 1, 0)
        case .doubleQuantized(let c, let m, let s, let offset, let nested):
            absmax = nil
            absmaxCodes = UnsafePointer(backend.bytes(c).assumingMemoryBound(to: UInt8.self))
            (nestedMap, scales) = (UnsafePointer(backend.elements(m)), UnsafePointer(backend.elements(s)))
            (self.offset, nestedBlocksize) = (offset, nested)
            nestedShift = nested & (nested - 1) == 0 ? nested.trailingZeroBitCount : -1
        }
    }

    /// Runs `body` with the source of `weight` whose elements round to `rounding` (its pair table on the stack).
    static func with<R>(_ weight: NF4Weight, rounding: DType, on backend: CPUBackend, _ body: (NF4Source) -> R) -> R {
        withUnsafeTemporaryAllocation(of: UInt64.self, capacity: 256) { pairs in
            body(NF4Source(weight, rounding: rounding, on: backend, pairs: pairs.baseAddress!))
        }
    }

    /// Block `block`'s absmax, exactly as NF4.swift states it.
    @inline(__always) func absmax(block: Int) -> Float {
        if let absmax { return absmax[block] }
        let group = nestedShift >= 0 ? block >> nestedShift : block / nestedBlocksize
        let scaled = nestedMap![Int(absmaxCodes![block])] * scales![group]
        return scaled + offset
    }

    /// Elements `first..<first + count` of the flattened weight, dequantized into `dst[0..<count]`: their code-book
    /// values first (a byte's pair per 8-byte load and store), then each block's stretch times its absmax
    /// (`map[q]·absmax`, one rounding, 16 lanes at a time).
    @inline(__always)
    func decode(from first: Int, count: Int, into dst: UnsafeMutablePointer<Float>) {
        let end = first + count
        var (e, out) = (first, dst)
        // An odd first element is the low nibble of its byte; then whole bytes; then a last high nibble.
        if e & 1 == 1 {
            out[0] = Float(bitPattern: UInt32(truncatingIfNeeded: pairs[Int(codes[e >> 1])] >> 32))
            (e, out) = (e + 1, out + 1)
        }
        let (bytes, whole) = (codes + (e >> 1), (end - e) >> 1)
        let raw = UnsafeMutableRawPointer(out)
        for i in 0..<whole { raw.storeBytes(of: pairs[Int(bytes[i])], toByteOffset: 8 * i, as: UInt64.self) }
        if e + 2 * whole < end {
            out[2 * whole] = Float(bitPattern: UInt32(truncatingIfNeeded: pairs[Int(bytes[whole])]))
        }
        var s = first
        while s < end {
            let block = s >> shift
            let stop = min((block + 1) << shift, end)
            let (scale, p, n) = (absmax(block: block), dst + (s - first), stop - s)
            let v = Vector(repeating: scale)
            var i = 0
            while i + 16 <= n {
                storeVector(loadVector(p + i) * v, p + i)
                i += 16
            }
            while i < n {
                p[i] = p[i] * scale
                i += 1
            }
            s = stop
        }
        if rounding != .float32 { round(dst, count: count) }
    }

    /// `p[0..<count]` rounded to `rounding` (bfloat16 or float16) and widened back: what bitsandbytes'
    /// `dequantize_4bit(...).to(float32)` gives for such a weight.
    @inline(never)
    func round(_ p: UnsafeMutablePointer<Float>, count: Int) {
        if rounding == .bfloat16 {
            for i in 0..<count { p[i] = Convert.float(bfloat16: Convert.bfloat16(p[i])) }
        } else {
            for i in 0..<count { p[i] = Convert.float(float16: Convert.float16(p[i])) }
        }
    }
}

extension PackedGEMM {
    /// Floats of a part's scratch beside the panels: for Wᵀ, eight decoded rows.
    static func nf4Extra(kc: Int) -> Int { 8 * kc }

    /// Packs panels `panels` (columns `firstColumn + q·NR`, up to `lastColumn`) of op(W)'s rows `rows` into `dst` as
    /// `packB` lays them out: panel q holds (p, jj) at `q·kc·NR + p·NR + jj`, zero past the last column.
    /// `transposeW`: op(W) = Wᵀ with W `[n, k]`, so a panel's column is a stretch of a W row (decoded eight rows at a
    /// time, then interleaved); otherwise W is `[k, n]` and a panel's row is a stretch of a W row.
    @inline(never)
    static func packNF4(_ w: NF4Source, transposeW: Bool, k: Int, n: Int, rows: Range<Int>, firstColumn: Int,
                        lastColumn: Int, panels: Range<Int>, into dst: UnsafeMutablePointer<Float>,
                        extra: UnsafeMutablePointer<Float>) {
        let (kcBlock, decoded) = (rows.count, extra)
        for q in panels {
            let j0 = firstColumn + q * nr, width = min(nr, lastColumn - j0)
            let out = dst + q * kcBlock * nr
            if !transposeW {
                for p in 0..<kcBlock {
                    w.decode(from: (rows.lowerBound + p) * n + j0, count: width, into: out + p * nr)
                    if width < nr { (out + p * nr + width).update(repeating: 0, count: nr - width) }
                }
                continue
            }
            for g in stride(from: 0, to: nr, by: 8) {
                let live = max(0, min(8, width - g))
                for r in 0..<8 {
                    if r < live {
                        w.decode(from: (j0 + g + r) * k + rows.lowerBound, count: kcBlock, into: decoded + r * kcBlock)
                    } else {
                        (decoded + r * kcBlock).update(repeating: 0, count: kcBlock)
                    }
                }
                let s = decoded
                for p in 0..<kcBlock {
                    let v = SIMD8<Float>(s[p], s[kcBlock + p], s[2 * kcBlock + p], s[3 * kcBlock + p],
                                         s[4 * kcBlock + p], s[5 * kcBlock + p], s[6 * kcBlock + p], s[7 * kcBlock + p])
                    UnsafeMutableRawPointer(out + p * nr + g).storeBytes(of: v, as: SIMD8<Float>.self)
                }
            }
        }
    }

    /// C = alpha·A·op(W) + beta·C (+ bias) with A a row-major float32 `[m, k]` and W in NF4 (see `packNF4`).
    static func multiplyNF4(m: Int, n: Int, k: Int, alpha: Float, a: StridedMatrix, w: NF4Source, transposeW: Bool,
                            beta: Float, c: StridedMatrix, bias: UnsafePointer<Float>?, pool: ThreadPool?) {
        // Rank-wide outputs: op(W) is at most 16 columns, dequantized whole (one panel, k·NR floats) for `narrow`,
        // which packs it again into its own slot.
        if n <= 16 && bias == nil {
            let dense = ThreadScratch.current(.sharedA, floats: k * nr + nf4Extra(kc: k))
            packNF4(w, transposeW: transposeW, k: k, n: n, rows: 0..<k, firstColumn: 0, lastColumn: n, panels: 0..<1,
                    into: dense, extra: dense + k * nr)
            return narrow(m: m, n: n, k: k, alpha: alpha, a: a, b: StridedMatrix(base: dense, rowStride: nr, colStride: 1),
                          beta: beta, c: c, pool: pool)
        }
        let kcMax = min(kc, k), panels = (n + nr - 1) / nr, blocks = (k + kc - 1) / kc
        let threads = m * n * k >= parallelThreshold ? (pool?.threadCount ?? 1) : 1
        // One panel per part on several threads (as `multiplyByPanels`); on one thread, groups of panels reuse A more.
        let panelParts = threads == 1 ? (panels + panelsPerPart - 1) / panelsPerPart : panels
        let perPart = (panels + panelParts - 1) / panelParts
        // Few panels for the threads (a narrow output, k/v projections): rows are split too, each row range
        // dequantizing its panels again. At least 64 rows each keep that repeat under ~1/64 of the multiply-adds.
        let rowParts = threads == 1 ? 1 : max(1, min((4 * threads + panelParts - 1) / panelParts, m / 64))
        let rowsPerPart = roundUp((m + rowParts - 1) / rowParts, mr)
        let rowPartCount = (m + rowsPerPart - 1) / rowsPerPart

        runParts(panelParts * rowPartCount, pool) { part in
            let owned = share(part % panelParts, of: panelParts, count: panels)
            let rows = part / panelParts * rowsPerPart..<min(m, (part / panelParts + 1) * rowsPerPart)
            guard !owned.isEmpty, !rows.isEmpty else { return }
            let scratch = ThreadScratch.current(.part, floats: mc * kcMax + perPart * kcMax * nr + mr * nr + nf4Extra(kc: kcMax))
            let (packedA, packedB) = (scratch, scratch + mc * kcMax)
            let tile = packedB + perPart * kcMax * nr
            let extra = tile + mr * nr
            let (column, width) = (owned.lowerBound * nr, min(n, owned.upperBound * nr) - owned.lowerBound * nr)
            for block in 0..<blocks {
                let p0 = block * kc, kcBlock = min(kc, k - p0)
                // beta and the bias apply once, in the first block of k.
                let (beta, bias) = p0 == 0 ? (beta, bias.map { $0 + column }) : (1, nil)
                packNF4(w, transposeW: transposeW, k: k, n: n, rows: p0..<p0 + kcBlock, firstColumn: column,
                        lastColumn: column + width, panels: 0..<owned.count, into: packedB, extra: extra)
                let bSource = Panels(packed: packedB, kc: kcBlock, width: nr)
                for i0 in stride(from: rows.lowerBound, to: rows.upperBound, by: mc) {
                    let mcBlock = min(mc, rows.upperBound - i0), tiles = (mcBlock + mr - 1) / mr
                    // A read in place; only a ragged last tile is packed.
                    let packFromTile = tiles - (mcBlock % mr == 0 ? 0 : 1)
                    packA(a, rows: i0 + packFromTile * mr..<i0 + mcBlock, columns: p0..<p0 + kcBlock,
                          into: packedA + packFromTile * kcBlock * mr)
                    let aSource = Panels(base: a.base + i0 * a.rowStride + p0, next: mr * a.rowStride, lane: a.rowStride,
                                         step: 1, packed: packedA, packedFrom: packFromTile, kc: kcBlock, width: mr)
                    macroKernel(tiles: tiles, mcBlock: mcBlock, panels: 0..<owned.count, ncBlock: width,
                                a: aSource, b: bSource, tile: tile, alpha: alpha, beta: beta, bias: bias,
                                c: c, row: i0, column: column, term: p0, k: k, triangle: nil)
                }
            }
        }
    }
}

extension CPUBackend {
    public func quantizedGEMM(_ op: QuantizedGEMM) throws {
        try requireOwned(op)
        let a = StridedMatrix(base: elements(op.a), rowStride: op.k, colStride: 1)
        let c = StridedMatrix(base: elements(op.c), rowStride: op.n, colStride: 1)
        let bias = op.bias.map { UnsafePointer(elements($0)) }
        NF4Source.with(op.weight, rounding: op.elementDType, on: self) { w in
            PackedGEMM.multiplyNF4(m: op.m, n: op.n, k: op.k, alpha: op.alpha, a: a, w: w, transposeW: op.transposeW,
                                   beta: op.beta, c: c, bias: bias, pool: pool)
        }
    }

    public func dequantizeNF4(_ op: NF4Dequantize) throws {
        try requireOwned(op)
        let (dst, count) = (elements(op.destination), op.weight.count)
        // Contiguous shares of whole blocks.
        let blocks = op.weight.blockCount, blocksize = op.weight.blocksize
        let parts = min(pool.threadCount, max(1, count >> 16), blocks)
        NF4Source.with(op.weight, rounding: op.weight.dtype, on: self) { w in
            runParts(parts, pool) { t in
                let range = share(t, of: parts, count: blocks)
                let first = range.lowerBound * blocksize, last = min(count, range.upperBound * blocksize)
                if first < last { w.decode(from: first, count: last - first, into: dst + first) }
            }
        }
    }
}
