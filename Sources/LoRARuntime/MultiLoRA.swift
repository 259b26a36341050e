// Many LoRA adapters in one batch (Punica's BGMV and SGMV, S-LoRA): every row of x picks its own adapter from a
// bank kept unmerged over the shared base weight.
//   y[i] += s_a · (x[i]·A_aᵀ)·B_aᵀ,   a = index[i]   (-1: the base model alone, nothing added)
// shrink (u = x·Aᵀ, r_a values per row), then expand (y += s·u·Bᵀ).
// Layouts: x [N, in], y [N, out]. The bank stacks its S slots, zero-padded to one rank R:
//   A  [S, R, in]   slot a's A_a [r_a, in] (PEFT's lora_A) in its first r_a rows
//   Bᵀ [S, R, out]  slot a's B_aᵀ [r_a, out] (PEFT's lora_B [out, r_a], transposed) in its first r_a rows
// B is kept transposed so that expanding one row is r_a contiguous axpys over out (and a GEMM reads it in place).
// with a rank r_a per slot (0: an empty slot, or an adapter that does not target this module: nothing added) and
// a scale s_a (alpha/r, or rsLoRA's alpha/√r). Only a slot's own r_a ranks are computed: padding costs memory only.
// Rows name their adapters per row (BGMV: decode, one new token per sequence) or by segments, contiguous row
// ranges sharing one adapter (SGMV: prefill); `AdapterRows` holds both views, built once per batch and shared by
// every module's op.

/// Which adapter each row of a batch uses: a per-row int32 index on the device, and the same as segments on the host.
public struct AdapterRows: Sendable {
    /// Contiguous rows that share an adapter (-1: none).
    public struct Segment: Sendable, Equatable {
        public let rows: Range<Int>
        public let adapter: Int
        public init(rows: Range<Int>, adapter: Int) { (self.rows, self.adapter) = (rows, adapter) }
    }

    /// N, the rows of the batch.
    public let count: Int
    /// Non-empty segments in row order, covering `0..<count`.
    public let segments: [Segment]
    /// `[N]` int32 on the device: row i's adapter slot, or -1.
    public let indices: Tensor
    /// The largest slot any row names (-1 when every row is base only).
    public let largestAdapter: Int

    /// BGMV's form: one index per row, each -1 or a slot ≥ 0.
    public init(indices: [Int32], backend: any Backend) throws {
        guard !indices.isEmpty else { throw LoRAError.invalidArgument("adapter rows: no rows") }
        if let bad = indices.first(where: { $0 < -1 }) {
            throw LoRAError.invalidArgument("adapter rows: index \(bad) is neither -1 (base model) nor a slot ≥ 0")
        }
        var segments: [Segment] = []
        var start = 0
        for i in 1...indices.count where i == indices.count || indices[i] != indices[start] {
            segments.append(Segment(rows: start..<i, adapter: Int(indices[start])))
            start = i
        }
        try self.init(count: indices.count, segments: segments, indices: indices, backend: backend)
    }

    /// SGMV's form (Punica's `s`): segment k is rows `starts[k]..<starts[k + 1]` with adapter `adapters[k]`.
    /// `starts` has one entry more than `adapters`, begins at 0 and never decreases; empty segments are allowed.
    public init(segmentStarts starts: [Int], adapters: [Int32], backend: any Backend) throws {
        guard starts.count == adapters.count + 1, starts.first == 0 else {
            throw LoRAError.invalidArgument("adapter rows: \(starts.count) segment starts for \(adapters.count) segments "
                + "(need one more, the first 0)")
        }
        guard let count = starts.last, count >= 1 else { throw LoRAError.invalidArgument("adapter rows: no rows") }
        if let k = starts.indices.dropFirst().first(where: { starts[$0] < starts[$0 - 1] }) {
            throw LoRAError.invalidArgument("adapter rows: segment start \(starts[k]) comes after \(starts[k - 1]) (starts must not decrease)")
        }
        if let bad = adapters.first(where: { $0 < -1 }) {
            throw LoRAError.invalidArgument("adapter rows: adapter \(bad) is neither -1 (base model) nor a slot ≥ 0")
        }
        var indices = [Int32](repeating: -1, count: count)
        var segments: [Segment] = []
        for (k, adapter) in adapters.enumerated() where starts[k] < starts[k + 1] {
            let rows = starts[k]..<starts[k + 1]
            for i in rows { indices[i] = adapter }
            segments.append(Segment(rows: rows, adapter: Int(adapter)))
        }
        try self.init(count: count, segments: segments, indices: indices, backend: backend)
    }

    /// One adapter per sequence of a `[B, T]` batch flattened to B·T rows: sequence b's rows share `adapters[b]`.
    public init(sequences adapters: [Int32], length: Int, backend: any Backend) throws {
        guard length >= 1 else { throw LoRAError.invalidArgument("adapter rows: sequence length \(length) must be ≥ 1") }
        try self.init(segmentStarts: (0...adapters.count).map { $0 * length }, adapters: adapters, backend: backend)
    }

    private init(count: Int, segments: [Segment], indices: [Int32], backend: any Backend) throws {
        (self.count, self.segments) = (count, segments)
        self.indices = try backend.upload(indices, shape: [count])
        largestAdapter = segments.map(\.adapter).max() ?? -1
        rowsByAdapter = Self.group(segments)
    }

    /// The rows of each adapter that has any (base-only rows left out), in order of first appearance. Built once
    /// per batch: every module's op reads it (a decode step of a 30-layer model, 120 or more times).
    public let rowsByAdapter: [(adapter: Int, ranges: [Range<Int>])]

    private static func group(_ segments: [Segment]) -> [(adapter: Int, ranges: [Range<Int>])] {
        var order: [Int] = [], ranges: [Int: [Range<Int>]] = [:]
        for segment in segments where segment.adapter >= 0 {
            if ranges[segment.adapter] == nil { order.append(segment.adapter) }
            ranges[segment.adapter, default: []].append(segment.rows)
        }
        return order.map { ($0, ranges[$0]!) }
    }
}

/// Each slot's rank and scale in a bank, on the host and on the device (the kernels read them there).
public struct LoRASlotTable: Sendable {
    /// r_a per slot, 0 for a slot that adds nothing.
    public let ranks: [Int]
    /// s_a per slot.
    public let scales: [Float]
    /// `[S]` int32 and `[S]` float32 copies on the device.
    public let rankTensor: Tensor, scaleTensor: Tensor

    public init(ranks: [Int], scales: [Float], backend: any Backend) throws {
        guard !ranks.isEmpty, ranks.count == scales.count else {
            throw LoRAError.invalidArgument("LoRA slot table: \(ranks.count) ranks and \(scales.count) scales (need the same, ≥ 1)")
        }
        if let bad = ranks.first(where: { $0 < 0 || $0 > Int(Int32.max) }) {
            throw LoRAError.invalidArgument("LoRA slot table: rank \(bad) out of range")
        }
        if let bad = scales.first(where: { !$0.isFinite }) { throw LoRAError.invalidArgument("LoRA slot table: scale \(bad) must be finite") }
        (self.ranks, self.scales) = (ranks, scales)
        rankTensor = try backend.upload(ranks.map { Int32($0) }, shape: [ranks.count])
        scaleTensor = try backend.upload(scales, shape: [scales.count])
    }
}

/// `y[i] += s_a·(x[i]·A_aᵀ)·B_aᵀ` for every row i whose adapter a = index[i] is ≥ 0 and has rank r_a > 0.
public struct MultiLoRA: BackendOp {
    public var owner: any Backend { y.backend }
    /// x `[N, in]`, y `[N, out]`, A `[S, R, in]`, Bᵀ `[S, R, out]`.
    public let x: Tensor, y: Tensor, a: Tensor, bT: Tensor
    public let slots: LoRASlotTable
    public let rows: AdapterRows
    /// N, in, out, S, R.
    public let count: Int, inFeatures: Int, outFeatures: Int, slotCount: Int, maxRank: Int

    /// - Parameters:
    ///   - a: `[S, R, in]`, slot a's A_a in its first r_a rows.
    ///   - bT: `[S, R, out]`, slot a's B_aᵀ in its first r_a rows.
    public init(x: Tensor, a: Tensor, bT: Tensor, slots: LoRASlotTable, rows: AdapterRows, y: Tensor) throws {
        try y.backend.requireOwned("multiLoRA", x, a, bT, y, slots.rankTensor, slots.scaleTensor, rows.indices)
        try requireFloat32("multiLoRA", ("x", x), ("A", a), ("Bᵀ", bT), ("y", y))
        guard a.rank == 3, bT.rank == 3 else {
            throw LoRAError.shapeMismatch("multiLoRA: A \(describe(a.shape)) ([S, R, in]) and Bᵀ \(describe(bT.shape)) ([S, R, out]) "
                + "must have three axes")
        }
        let (s, r, inF, outF) = (a.shape[0], a.shape[1], a.shape[2], bT.shape[2])
        guard bT.shape[0] == s, bT.shape[1] == r else {
            throw LoRAError.shapeMismatch("multiLoRA: A is \(describe(a.shape)) ([S, R, in]) but Bᵀ is \(describe(bT.shape)) ([S, R, out])")
        }
        guard slots.ranks.count == s else {
            throw LoRAError.shapeMismatch("multiLoRA: \(slots.ranks.count) slot ranks for a bank of \(s) slots")
        }
        if let bad = slots.ranks.first(where: { $0 > r }) {
            throw LoRAError.invalidArgument("multiLoRA: a slot of rank \(bad) in a bank padded to rank \(r)")
        }
        let n = rows.count
        guard x.shape.last == inF, x.count == n * inF else {
            throw LoRAError.shapeMismatch("multiLoRA: x is \(describe(x.shape)) but should hold \(n) rows of \(inF)")
        }
        guard y.shape.last == outF, y.count == n * outF else {
            throw LoRAError.shapeMismatch("multiLoRA: y is \(describe(y.shape)) but should hold \(n) rows of \(outF)")
        }
        guard rows.largestAdapter < s else {
            throw LoRAError.invalidArgument("multiLoRA: a row names adapter slot \(rows.largestAdapter) but the bank has \(s) slots")
        }
        (self.x, self.y, self.a, self.bT, self.slots, self.rows) = (x, y, a, bT, slots, rows)
        (count, inFeatures, outFeatures, slotCount, maxRank) = (n, inF, outF, s, r)
    }

    /// The adapters some row uses with a rank above 0 (those that add anything), each with its rows.
    public var activeGroups: [(adapter: Int, ranges: [Range<Int>])] {
        rows.rowsByAdapter.filter { slots.ranks[$0.adapter] > 0 }
    }
}
