// Causal multi-head attention as one op, forward and backward: for every sequence b and query head h, with kv head
// g(h) = h / (H / Hkv) (grouped-query attention; Hkv = H is plain multi-head, Hkv = 1 multi-query),
//   P = softmax(scale·Q·Kᵀ) (query i sees keys j ≤ i + Tk − T, and with a window W only j > i + Tk − T − W),
//   context = P·V
// and backward, from dContext:
//   dP = dContext·Vᵀ, dV = Σ_h Pᵀ·dContext, dS = scale·P⊙(dP − rowsum(dP⊙P)), dQ = dS·K, dK = Σ_h dSᵀ·Q
// (the sums over the query heads sharing a kv head).
// As one op a backend can keep a head's scores in cache from the product through the softmax to the next product
// (the CPU runs each head start to finish on one thread); as separate GEMM and softmax launches the scores made
// three round trips through memory and attention took a quarter of a small model's training step.
//
// Packed rows (several examples concatenated in one sequence, as `--packing` trains) pass segment starts: an int32
// `[B, T]` tensor holding each query's first visible key (its example's first token), so no example attends to
// another (block-diagonal causal attention, combined with the window where there is one).
//
// Operands are strided views, so q, k and v are read where the QKV projection left them ([N, 3C], heads side by
// side) and a KV cache's keys can be used in place.

/// Where the `[rows, D]` matrix of sequence b, head h of a multi-head operand lives: it starts at
/// `offset + b·sequenceStride + h·headStride`, and its rows are `ld` elements apart.
public struct HeadOperand: Sendable {
    public let tensor: Tensor
    public let offset: Int, ld: Int, sequenceStride: Int, headStride: Int

    public init(_ tensor: Tensor, offset: Int = 0, ld: Int, sequenceStride: Int, headStride: Int) {
        (self.tensor, self.offset, self.ld, self.sequenceStride, self.headStride) = (tensor, offset, ld, sequenceStride, headStride)
    }

    /// Where sequence b, head h starts.
    @inlinable public func start(_ b: Int, _ h: Int) -> Int { offset + b * sequenceStride + h * headStride }

    /// Throws unless every element of every `[rows, cols]` matrix lies inside the tensor.
    func check(_ name: String, sequences: Int, heads: Int, rows: Int, cols: Int) throws {
        guard offset >= 0, sequenceStride >= 0, headStride >= 0, ld >= cols else {
            throw LoRAError.invalidArgument("attention: \(name) has offset \(offset), ld \(ld), strides \(sequenceStride), "
                + "\(headStride) for \(rows)×\(cols) matrices")
        }
        let last = start(sequences - 1, heads - 1) + (rows - 1) * ld + cols
        guard last <= tensor.count else {
            throw LoRAError.shapeMismatch("attention: \(name) reaches element \(last) but its tensor \(describe(tensor.shape)) has \(tensor.count)")
        }
    }

    /// For an output (heads are written in parallel): throws unless the matrices are disjoint, a sequence's heads
    /// side by side within its rows or one after another, and the sequences one after another.
    func checkDisjoint(_ name: String, sequences: Int, heads: Int, rows: Int, cols: Int) throws {
        let span = (rows - 1) * ld + cols
        let sideBySide = headStride >= cols && (heads - 1) * headStride + cols <= ld
        let extent = (heads - 1) * headStride + span
        guard heads == 1 || sideBySide || headStride >= span, sequences == 1 || sequenceStride >= extent else {
            throw LoRAError.invalidArgument("attention: the \(rows)×\(cols) matrices of output \(name) overlap (ld \(ld), "
                + "sequence stride \(sequenceStride), head stride \(headStride))")
        }
    }
}

/// The shapes attention works on: B sequences, H query heads and Hkv key/value heads of width D, T queries each
/// against Tk keys (Tk ≥ T: the first Tk − T keys were cached before these queries), and an optional sliding window.
///
/// Query head h reads kv head `h / (H / Hkv)`. With a window W (Mistral's `sliding_window`), the query at absolute
/// position p = Tk − T + i sees keys j with `p − W < j ≤ p` (transformers' `sliding_window_causal_mask_function`:
/// `kv_idx > q_idx − W` and `kv_idx ≤ q_idx`), so W keys counting itself.
public struct AttentionShape: Sendable, Equatable {
    public let sequences: Int, heads: Int, kvHeads: Int, headDim: Int, queries: Int, keys: Int
    public let scale: Float
    /// Keys a query sees, counting its own (nil: all earlier keys).
    public let window: Int?

    /// `kvHeads` nil means `heads` (plain multi-head attention).
    public init(sequences: Int, heads: Int, kvHeads: Int? = nil, headDim: Int, queries: Int, keys: Int, scale: Float,
                window: Int? = nil) throws {
        let kvHeads = kvHeads ?? heads
        guard sequences >= 1, heads >= 1, kvHeads >= 1, headDim >= 1, queries >= 1, keys >= queries else {
            throw LoRAError.invalidArgument("attention: B=\(sequences) H=\(heads) Hkv=\(kvHeads) D=\(headDim) T=\(queries) "
                + "Tk=\(keys) must be ≥ 1 with Tk ≥ T")
        }
        guard heads % kvHeads == 0 else {
            throw LoRAError.invalidArgument("attention: \(kvHeads) kv heads do not divide \(heads) query heads")
        }
        guard scale.isFinite else { throw LoRAError.invalidArgument("attention: scale \(scale) must be finite") }
        if let window, window < 1 { throw LoRAError.invalidArgument("attention: window \(window) must be ≥ 1") }
        (self.sequences, self.heads, self.kvHeads, self.headDim) = (sequences, heads, kvHeads, headDim)
        (self.queries, self.keys, self.scale, self.window) = (queries, keys, scale, window)
    }

    /// Keys cached before the first query: query i sees keys `0...i + cached` (within the window).
    public var cached: Int { keys - queries }
    /// Query heads per kv head.
    public var groupSize: Int { heads / kvHeads }
    /// The kv head query head h reads.
    @inlinable public func kvHead(_ h: Int) -> Int { h / (heads / kvHeads) }
    /// How many keys query i (of 0..<T) sees without the window: `0...p` for its absolute position p = cached + i
    /// (softmax's causal rule over `[T, Tk]` rows).
    @inlinable public func visibleCount(query i: Int) -> Int {
        Softmax.visibleCount(row: i, cols: keys, queryLength: queries)
    }
    /// The keys query i (of 0..<T) sees: `max(0, p − W + 1)...p` for its absolute position p = cached + i.
    @inlinable public func visibleKeys(query i: Int) -> Range<Int> {
        Softmax.visibleKeys(visibleCount: visibleCount(query: i), window: window)
    }
    /// The probabilities' shape `[B, H, T, Tk]`.
    public var probabilityShape: [Int] { [sequences, heads, queries, keys] }

    /// Segment starts must be int32 `[B, T]` (any shape of B·T elements).
    func check(_ op: String, segmentStarts: Tensor?) throws {
        guard let segmentStarts else { return }
        try segmentStarts.requireDType([.int32], op: op, operand: "segmentStarts")
        guard segmentStarts.count == sequences * queries else {
            throw LoRAError.shapeMismatch("\(op): segment starts \(describe(segmentStarts.shape)) must hold one start per query, "
                + "\(sequences)×\(queries)")
        }
    }

    func check(probabilities p: Tensor) throws {
        guard p.shape == probabilityShape else {
            throw LoRAError.shapeMismatch("attention: probabilities are \(describe(p.shape)), expected \(describe(probabilityShape))")
        }
    }
}

/// Causal attention forward: writes the probabilities (kept for backward) and the context.
/// Query and context have H heads, key and value Hkv.
public struct Attention: BackendOp {
    public var owner: any Backend { context.tensor.backend }
    public let shape: AttentionShape
    /// `[T, D]`, `[Tk, D]`, `[Tk, D]` and `[T, D]` per sequence and head.
    public let query: HeadOperand, key: HeadOperand, value: HeadOperand, context: HeadOperand
    /// `[B, H, T, Tk]`, contiguous; entries above the causal diagonal (and before a row's segment start) are 0.
    public let probabilities: Tensor
    /// int32 `[B, T]`: query i of sequence b sees keys from `segmentStarts[b, i]` on (key coordinates, cached keys
    /// counted); nil: from 0. See `SegmentStarts`.
    public let segmentStarts: Tensor?

    public init(_ shape: AttentionShape, query: HeadOperand, key: HeadOperand, value: HeadOperand,
                probabilities: Tensor, context: HeadOperand, segmentStarts: Tensor? = nil) throws {
        let (b, h, hkv, d) = (shape.sequences, shape.heads, shape.kvHeads, shape.headDim)
        try query.check("query", sequences: b, heads: h, rows: shape.queries, cols: d)
        try key.check("key", sequences: b, heads: hkv, rows: shape.keys, cols: d)
        try value.check("value", sequences: b, heads: hkv, rows: shape.keys, cols: d)
        try context.check("context", sequences: b, heads: h, rows: shape.queries, cols: d)
        try context.checkDisjoint("context", sequences: b, heads: h, rows: shape.queries, cols: d)
        try shape.check(probabilities: probabilities)
        try context.tensor.backend.requireOwned("attention", query.tensor, key.tensor, value.tensor, probabilities, segmentStarts)
        try requireFloat32("attention", ("query", query.tensor), ("key", key.tensor), ("value", value.tensor),
                           ("probabilities", probabilities), ("context", context.tensor))
        try shape.check("attention", segmentStarts: segmentStarts)
        (self.shape, self.query, self.key, self.value) = (shape, query, key, value)
        (self.probabilities, self.context, self.segmentStarts) = (probabilities, context, segmentStarts)
    }
}

/// Causal attention backward: dQuery, dKey and dValue (written, not accumulated) from dContext and the forward's
/// probabilities. dKey and dValue have Hkv heads: each sums the gradients of its group's query heads.
public struct AttentionBackward: BackendOp {
    public var owner: any Backend { dQuery.tensor.backend }
    public let shape: AttentionShape
    public let query: HeadOperand, key: HeadOperand, value: HeadOperand
    public let probabilities: Tensor
    public let dContext: HeadOperand
    public let dQuery: HeadOperand, dKey: HeadOperand, dValue: HeadOperand
    /// The forward's segment starts.
    public let segmentStarts: Tensor?

    public init(_ shape: AttentionShape, query: HeadOperand, key: HeadOperand, value: HeadOperand, probabilities: Tensor,
                dContext: HeadOperand, dQuery: HeadOperand, dKey: HeadOperand, dValue: HeadOperand,
                segmentStarts: Tensor? = nil) throws {
        let (b, d) = (shape.sequences, shape.headDim)
        let (h, hkv) = (shape.heads, shape.kvHeads)
        for (name, x, heads, rows) in [("query", query, h, shape.queries), ("key", key, hkv, shape.keys),
                                       ("value", value, hkv, shape.keys), ("dContext", dContext, h, shape.queries),
                                       ("dQuery", dQuery, h, shape.queries), ("dKey", dKey, hkv, shape.keys),
                                       ("dValue", dValue, hkv, shape.keys)] {
            try x.check(name, sequences: b, heads: heads, rows: rows, cols: d)
            if name.hasPrefix("dQ") || name.hasPrefix("dK") || name.hasPrefix("dV") {
                try x.checkDisjoint(name, sequences: b, heads: heads, rows: rows, cols: d)
            }
        }
        try shape.check(probabilities: probabilities)
        try dQuery.tensor.backend.requireOwned("attentionBackward", query.tensor, key.tensor, value.tensor, probabilities,
                                               dContext.tensor, dKey.tensor, dValue.tensor, segmentStarts)
        try shape.check("attentionBackward", segmentStarts: segmentStarts)
        try requireFloat32("attentionBackward", ("query", query.tensor), ("key", key.tensor), ("value", value.tensor),
                           ("probabilities", probabilities), ("dContext", dContext.tensor), ("dQuery", dQuery.tensor),
                           ("dKey", dKey.tensor), ("dValue", dValue.tensor))
        (self.shape, self.query, self.key, self.value, self.probabilities) = (shape, query, key, value, probabilities)
        (self.dContext, self.dQuery, self.dKey, self.dValue) = (dContext, dQuery, dKey, dValue)
        self.segmentStarts = segmentStarts
    }
}
