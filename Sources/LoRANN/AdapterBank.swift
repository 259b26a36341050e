// A bank of LoRA adapters on one linear module, kept unmerged so that every row of a batch can use its own
// (MultiLoRA.swift: Punica's BGMV/SGMV). Slots are numbered model-wide: slot a is the same adapter in every module's
// bank, and a slot whose adapter does not target this module has rank 0 here (it adds nothing).
// Storage: A [S, R, in] and Bᵀ [S, R, out] (PEFT's lora_B transposed on the way in), float32, zero-padded to the
// largest rank R seen; both grow (a copy on the device) when a slot beyond S or a rank beyond R arrives.
// Inference only: the bank has no gradients.
import LoRARuntime

/// Adapters in numbered slots over one frozen linear layer.
public final class AdapterBank {
    public let backend: any Backend
    public let inFeatures: Int, outFeatures: Int
    /// `[S, R, in]`: slot a's A `[r_a, in]` in its first r_a rows.
    public private(set) var a: Tensor
    /// `[S, R, out]`: slot a's Bᵀ `[r_a, out]` in its first r_a rows.
    public private(set) var bT: Tensor
    /// Each slot's rank (0: empty here) and scale, on the host and the device.
    public private(set) var slots: LoRASlotTable

    /// S, the slots allocated.
    public var capacity: Int { a.shape[0] }
    /// R, the rank every slot is padded to.
    public var maxRank: Int { a.shape[1] }
    /// Whether no slot holds an adapter.
    public var isEmpty: Bool { slots.ranks.allSatisfy { $0 == 0 } }

    /// An empty bank of `capacity` slots padded to `maxRank` (both grow as adapters arrive).
    public init(backend: any Backend, inFeatures: Int, outFeatures: Int, capacity: Int = 1, maxRank: Int = 1) throws {
        guard inFeatures >= 1, outFeatures >= 1, capacity >= 1, maxRank >= 1 else {
            throw LoRAError.invalidArgument("adapter bank: in \(inFeatures), out \(outFeatures), capacity \(capacity), "
                + "rank \(maxRank) must all be ≥ 1")
        }
        (self.backend, self.inFeatures, self.outFeatures) = (backend, inFeatures, outFeatures)
        a = try backend.zeros([capacity, maxRank, inFeatures])
        bT = try backend.zeros([capacity, maxRank, outFeatures])
        slots = try LoRASlotTable(ranks: Array(repeating: 0, count: capacity), scales: Array(repeating: 0, count: capacity),
                                  backend: backend)
    }

    /// Puts an adapter in `slot` (replacing what was there): A `[rank, in]` and B `[out, rank]` row-major, and its
    /// scale (`alpha / rank`, or `alpha / √rank` with rsLoRA).
    public func set(slot: Int, a aValues: [Float], b bValues: [Float], rank: Int, scale: Float) throws {
        guard slot >= 0 else { throw LoRAError.invalidArgument("adapter bank: slot \(slot) must be ≥ 0") }
        guard rank >= 1 else { throw LoRAError.invalidArgument("adapter bank: rank \(rank) must be ≥ 1") }
        guard aValues.count == rank * inFeatures, bValues.count == outFeatures * rank else {
            throw LoRAError.shapeMismatch("adapter bank: A has \(aValues.count) values and B \(bValues.count) for rank \(rank) "
                + "on a layer of in \(inFeatures), out \(outFeatures) (A [\(rank), \(inFeatures)], B [\(outFeatures), \(rank)])")
        }
        guard scale.isFinite else { throw LoRAError.invalidArgument("adapter bank: scale \(scale) must be finite") }
        try grow(capacity: slot + 1, maxRank: rank)
        let r = maxRank
        try clearStorage(slot: slot)
        var transposed = [Float](repeating: 0, count: rank * outFeatures)
        for o in 0..<outFeatures { for q in 0..<rank { transposed[q * outFeatures + o] = bValues[o * rank + q] } }
        let (newA, newBT) = (try backend.upload(aValues, shape: [rank, inFeatures]), try backend.upload(transposed, shape: [rank, outFeatures]))
        try backend.blockCopy(BlockCopy(rows: 1, cols: rank * inFeatures, from: GEMMOperand(newA, ld: rank * inFeatures),
                                        to: GEMMOperand(a, offset: slot * r * inFeatures, ld: rank * inFeatures)))
        try backend.blockCopy(BlockCopy(rows: 1, cols: rank * outFeatures, from: GEMMOperand(newBT, ld: rank * outFeatures),
                                        to: GEMMOperand(bT, offset: slot * r * outFeatures, ld: rank * outFeatures)))
        try setSlot(slot, rank: rank, scale: scale)
    }

    /// Empties `slot`: it adds nothing until set again.
    public func clear(slot: Int) throws {
        guard slot >= 0, slot < capacity else { return }
        try clearStorage(slot: slot)
        try setSlot(slot, rank: 0, scale: 0)
    }

    /// `y += s_a·(x·A_aᵀ)·B_aᵀ` row by row, a = each row's slot in `rows` (-1: nothing). x `[N, in]`, y `[N, out]`.
    /// Rows naming a slot beyond this bank's (an adapter loaded after it last grew that does not target this module)
    /// add nothing.
    public func apply(_ x: Tensor, into y: Tensor, rows: AdapterRows) throws {
        guard rows.largestAdapter >= 0 else { return }
        try reserve(capacity: rows.largestAdapter + 1)
        try backend.multiLoRA(MultiLoRA(x: x, a: a, bT: bT, slots: slots, rows: rows, y: y))
    }

    /// Zeros one slot's A and B, so that padding past a smaller rank set later holds zeros (the kernels never read
    /// it; a reader of the raw tensors would).
    private func clearStorage(slot: Int) throws {
        let (aCount, bCount) = (maxRank * inFeatures, maxRank * outFeatures)
        let zeros = try backend.zeros([max(aCount, bCount)])
        try backend.blockCopy(BlockCopy(rows: 1, cols: aCount, from: GEMMOperand(zeros, ld: aCount),
                                        to: GEMMOperand(a, offset: slot * aCount, ld: aCount)))
        try backend.blockCopy(BlockCopy(rows: 1, cols: bCount, from: GEMMOperand(zeros, ld: bCount),
                                        to: GEMMOperand(bT, offset: slot * bCount, ld: bCount)))
    }

    /// Makes room for `capacity` slots (new ones empty), so that rows may name any of them.
    public func reserve(capacity: Int) throws { try grow(capacity: capacity, maxRank: 1) }

    private func setSlot(_ slot: Int, rank: Int, scale: Float) throws {
        var (ranks, scales) = (slots.ranks, slots.scales)
        (ranks[slot], scales[slot]) = (rank, scale)
        slots = try LoRASlotTable(ranks: ranks, scales: scales, backend: backend)
    }

    /// Reallocates to at least `capacity` slots (doubling) and rank `maxRank`, copying every slot across.
    private func grow(capacity needed: Int, maxRank neededRank: Int) throws {
        guard needed > capacity || neededRank > maxRank else { return }
        let (oldS, oldR) = (capacity, maxRank)
        let newS = needed > oldS ? max(needed, 2 * oldS) : oldS
        let newR = max(oldR, neededRank)
        let (newA, newBT) = (try backend.zeros([newS, newR, inFeatures]), try backend.zeros([newS, newR, outFeatures]))
        // Slot by slot: each slot's R rows land at the start of its new R' rows.
        try backend.blockCopy(BlockCopy(rows: 1, cols: oldR * inFeatures, batch: oldS,
                                        from: GEMMOperand(a, ld: oldR * inFeatures, batchStride: oldR * inFeatures),
                                        to: GEMMOperand(newA, ld: oldR * inFeatures, batchStride: newR * inFeatures)))
        try backend.blockCopy(BlockCopy(rows: 1, cols: oldR * outFeatures, batch: oldS,
                                        from: GEMMOperand(bT, ld: oldR * outFeatures, batchStride: oldR * outFeatures),
                                        to: GEMMOperand(newBT, ld: oldR * outFeatures, batchStride: newR * outFeatures)))
        (a, bT) = (newA, newBT)
        let pad = newS - oldS
        slots = try LoRASlotTable(ranks: slots.ranks + Array(repeating: 0, count: pad),
                                  scales: slots.scales + Array(repeating: 0, count: pad), backend: backend)
    }
}
