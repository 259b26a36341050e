// OpenCL causal attention from the GEMM (matmul.cl, with the causal triangles) and softmax (softmax.cl, with the
// sliding window) kernels. A device runs each launch over many heads at once, so the (sequence, query head) pairs
// are batched: a launch takes a run of pairs whose operands sit at one stride from each other. With grouped-query
// attention (query head h reads kv head h / G), three such runs exist:
//   over sequences:   one query head, every sequence                    (H launches)
//   over kv heads:    one sequence, member r of every group (h = G·j + r) (B·G launches)
//   over a group:     one sequence, one kv head, its G query heads      (B·Hkv launches; the kv operand repeats)
// Products into query-side outputs take whichever needs fewest launches. dK and dV sum over a group's query heads:
// they take one of the first two, the group's first member writing (beta 0) and the others adding (beta 1) in
// queue order, so no two work-items ever add to one element at once.
// Packed rows' segment starts reach only the softmax: it zeroes each row's probabilities (and score gradients) before
// its segment start, so the products over the causal triangle add nothing across examples.
import LoRARuntime

extension OpenCLBackend {
    public func attention(_ op: Attention) throws {
        try requireOwned(op)
        let s = op.shape
        let runs = HeadRuns(s).fewest(allowingGroups: true)
        let p = HeadRuns.probabilities(op.probabilities, s)
        for run in runs {
            try gemm(GEMM(m: s.queries, n: s.keys, k: s.headDim, batch: run.batch, a: run.query(op.query),
                          b: run.kv(op.key), transposeB: true, c: run.query(p), triangle: .lowerC(offset: s.cached)))
        }
        try softmax(Softmax(x: op.probabilities, y: op.probabilities, scale: s.scale, causal: true, window: s.window,
                            segmentStarts: op.segmentStarts))
        for run in runs {
            try gemm(GEMM(m: s.queries, n: s.headDim, k: s.keys, batch: run.batch, a: run.query(p),
                          b: run.kv(op.value), c: run.query(op.context), triangle: .lowerA(offset: s.cached)))
        }
    }

    public func attentionBackward(_ op: AttentionBackward) throws {
        try requireOwned(op)
        let s = op.shape
        let heads = HeadRuns(s)
        let (queryRuns, kvRuns) = (heads.fewest(allowingGroups: true), heads.fewest(allowingGroups: false))
        let scores = try empty(s.probabilityShape)
        let (p, ds) = (HeadRuns.probabilities(op.probabilities, s), HeadRuns.probabilities(scores, s))
        let (t, tk, d) = (s.queries, s.keys, s.headDim)
        for run in queryRuns {
            try gemm(GEMM(m: t, n: tk, k: d, batch: run.batch, a: run.query(op.dContext), b: run.kv(op.value),
                          transposeB: true, c: run.query(ds), triangle: .lowerC(offset: s.cached)))
        }
        for run in kvRuns {
            try gemm(GEMM(m: tk, n: d, k: t, batch: run.batch, a: run.query(p), transposeA: true, b: run.query(op.dContext),
                          beta: run.first ? 0 : 1, c: run.kv(op.dValue), triangle: .upperA(offset: s.cached)))
        }
        try softmaxBackward(SoftmaxBackward(y: op.probabilities, dy: scores, dx: scores, scale: s.scale, causal: true,
                                            window: s.window, segmentStarts: op.segmentStarts))
        for run in queryRuns {
            try gemm(GEMM(m: t, n: d, k: tk, batch: run.batch, a: run.query(ds), b: run.kv(op.key), c: run.query(op.dQuery),
                          triangle: .lowerA(offset: s.cached)))
        }
        for run in kvRuns {
            try gemm(GEMM(m: tk, n: d, k: t, batch: run.batch, a: run.query(ds), transposeA: true, b: run.query(op.query),
                          beta: run.first ? 0 : 1, c: run.kv(op.dKey), triangle: .upperA(offset: s.cached)))
        }
    }
}

/// The (sequence, query head) pairs of attention as runs, each one batched GEMM launch.
private struct HeadRuns {
    let shape: AttentionShape
    init(_ shape: AttentionShape) { self.shape = shape }

    /// Pairs (b0 + i·db, h0 + i·dh) for i in 0..<batch; their kv heads are kvh0 + i·dkv.
    struct Run {
        let b0: Int, h0: Int, kvh0: Int
        let db: Int, dh: Int, dkv: Int
        let batch: Int
        /// Whether these pairs are the first of their groups to reach dK and dV (which they then write, not add to).
        let first: Bool

        /// A query-side operand (query, context, their gradients, probabilities) over this run's pairs.
        func query(_ x: HeadOperand) -> GEMMOperand {
            GEMMOperand(x.tensor, offset: x.start(b0, h0), ld: x.ld, batchStride: db * x.sequenceStride + dh * x.headStride)
        }

        /// A kv-side operand (key, value, their gradients): stride 0 repeats one kv head over a group.
        func kv(_ x: HeadOperand) -> GEMMOperand {
            GEMMOperand(x.tensor, offset: x.start(b0, kvh0), ld: x.ld, batchStride: db * x.sequenceStride + dkv * x.headStride)
        }
    }

    /// One query head over every sequence, in group order (h = G·j + r, r before j).
    var overSequences: [Run] {
        let g = shape.groupSize
        return (0..<shape.kvHeads).flatMap { j in
            (0..<g).map { r in Run(b0: 0, h0: g * j + r, kvh0: j, db: 1, dh: 0, dkv: 0, batch: shape.sequences, first: r == 0) }
        }
    }

    /// One sequence, member r of every group.
    var overKVHeads: [Run] {
        let g = shape.groupSize
        return (0..<shape.sequences).flatMap { b in
            (0..<g).map { r in Run(b0: b, h0: r, kvh0: 0, db: 0, dh: g, dkv: 1, batch: shape.kvHeads, first: r == 0) }
        }
    }

    /// One sequence, one group's query heads against its kv head (not for outputs on the kv side).
    var overGroups: [Run] {
        let g = shape.groupSize
        return (0..<shape.sequences).flatMap { b in
            (0..<shape.kvHeads).map { j in Run(b0: b, h0: g * j, kvh0: j, db: 0, dh: 1, dkv: 0, batch: g, first: true) }
        }
    }

    /// The runs needing the fewest launches (ties: the earlier of over kv heads, over sequences, over groups).
    func fewest(allowingGroups: Bool) -> [Run] {
        let (b, h, hkv) = (shape.sequences, shape.heads, shape.kvHeads)
        var best = b * shape.groupSize <= h ? overKVHeads : overSequences
        if allowingGroups && b * hkv < best.count { best = overGroups }
        return best
    }

    /// A `[B, H, T, Tk]` tensor as a multi-head operand.
    static func probabilities(_ p: Tensor, _ shape: AttentionShape) -> HeadOperand {
        let (t, tk) = (shape.queries, shape.keys)
        return HeadOperand(p, ld: tk, sequenceStride: shape.heads * t * tk, headStride: t * tk)
    }
}
