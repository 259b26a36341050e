// Causal multi-head attention as one op, forward and backward: for every sequence b and head h,
//   P = softmax(scale·Q·Kᵀ) (query i sees keys j ≤ i + Tk − T),  context = P·V
// and backward, from dContext:
//   dP = dContext·Vᵀ, dV = Pᵀ·dContext, dS = scale·P⊙(dP − rowsum(dP⊙P)), dQ = dS·K, dK = dSᵀ·Q.
// As one op a backend can keep a head's scores in cache from the product through the softmax to the next product
// (the CPU runs each head start to finish on one thread); as separate GEMM and softmax launches the scores made
// three round trips through memory and attention took a quarter of a small model's training step.
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

/// The shapes attention works on: B sequences, H heads of width D, T queries each against Tk keys (Tk ≥ T: the
/// first Tk − T keys were cached before these queries).
public struct AttentionShape: Sendable, Equatable {
    public let sequences: Int, heads: Int, headDim: Int, queries: Int, keys: Int
    public let scale: Float

    public init(sequences: Int, heads: Int, headDim: Int, queries: Int, keys: Int, scale: Float) throws {
        guard sequences >= 1, heads >= 1, headDim >= 1, queries >= 1, keys >= queries else {
            throw LoRAError.invalidArgument("attention: B=\(sequences) H=\(heads) D=\(headDim) T=\(queries) Tk=\(keys) "
                + "must be ≥ 1 with Tk ≥ T")
        }
        guard scale.isFinite else { throw LoRAError.invalidArgument("attention: scale \(scale) must be finite") }
        (self.sequences, self.heads, self.headDim, self.queries, self.keys, self.scale) = (sequences, heads, headDim, queries, keys, scale)
    }

    /// Keys cached before the first query: query i sees keys `0...i + cached`.
    public var cached: Int { keys - queries }
    /// The probabilities' shape `[B, H, T, Tk]`.
    public var probabilityShape: [Int] { [sequences, heads, queries, keys] }

    func check(probabilities p: Tensor) throws {
        guard p.shape == probabilityShape else {
            throw LoRAError.shapeMismatch("attention: probabilities are \(describe(p.shape)), expected \(describe(probabilityShape))")
        }
    }
}

/// Causal attention forward: writes the probabilities (kept for backward) and the context.
public struct Attention: BackendOp {
    public var owner: any Backend { context.tensor.backend }
    public let shape: AttentionShape
    /// `[T, D]`, `[Tk, D]`, `[Tk, D]` and `[T, D]` per sequence and head.
    public let query: HeadOperand, key: HeadOperand, value: HeadOperand, context: HeadOperand
    /// `[B, H, T, Tk]`, contiguous; entries above the causal diagonal are 0.
    public let probabilities: Tensor

    public init(_ shape: AttentionShape, query: HeadOperand, key: HeadOperand, value: HeadOperand,
                probabilities: Tensor, context: HeadOperand) throws {
        let (b, h, d) = (shape.sequences, shape.heads, shape.headDim)
        try query.check("query", sequences: b, heads: h, rows: shape.queries, cols: d)
        try key.check("key", sequences: b, heads: h, rows: shape.keys, cols: d)
        try value.check("value", sequences: b, heads: h, rows: shape.keys, cols: d)
        try context.check("context", sequences: b, heads: h, rows: shape.queries, cols: d)
        try context.checkDisjoint("context", sequences: b, heads: h, rows: shape.queries, cols: d)
        try shape.check(probabilities: probabilities)
        try context.tensor.backend.requireOwned("attention", query.tensor, key.tensor, value.tensor, probabilities)
        (self.shape, self.query, self.key, self.value) = (shape, query, key, value)
        (self.probabilities, self.context) = (probabilities, context)
    }
}

/// Causal attention backward: dQuery, dKey and dValue (written, not accumulated) from dContext and the forward's
/// probabilities.
public struct AttentionBackward: BackendOp {
    public var owner: any Backend { dQuery.tensor.backend }
    public let shape: AttentionShape
    public let query: HeadOperand, key: HeadOperand, value: HeadOperand
    public let probabilities: Tensor
    public let dContext: HeadOperand
    public let dQuery: HeadOperand, dKey: HeadOperand, dValue: HeadOperand

    public init(_ shape: AttentionShape, query: HeadOperand, key: HeadOperand, value: HeadOperand, probabilities: Tensor,
                dContext: HeadOperand, dQuery: HeadOperand, dKey: HeadOperand, dValue: HeadOperand) throws {
        let (b, h, d) = (shape.sequences, shape.heads, shape.headDim)
        for (name, x, rows) in [("query", query, shape.queries), ("key", key, shape.keys), ("value", value, shape.keys),
                                ("dContext", dContext, shape.queries), ("dQuery", dQuery, shape.queries),
                                ("dKey", dKey, shape.keys), ("dValue", dValue, shape.keys)] {
            try x.check(name, sequences: b, heads: h, rows: rows, cols: d)
            if name.hasPrefix("dQ") || name.hasPrefix("dK") || name.hasPrefix("dV") {
                try x.checkDisjoint(name, sequences: b, heads: h, rows: rows, cols: d)
            }
        }
        try shape.check(probabilities: probabilities)
        try dQuery.tensor.backend.requireOwned("attentionBackward", query.tensor, key.tensor, value.tensor, probabilities,
                                               dContext.tensor, dKey.tensor, dValue.tensor)
        (self.shape, self.query, self.key, self.value, self.probabilities) = (shape, query, key, value, probabilities)
        (self.dContext, self.dQuery, self.dKey, self.dValue) = (dContext, dQuery, dKey, dValue)
    }
}
