// OpenCL causal attention from the GEMM (matmul.cl, with the causal triangles) and softmax (softmax.cl) kernels.
// A device runs each launch over many heads at once, so the heads are batched: each launch fixes one sequence and
// batches over the heads, or fixes one head and batches over the sequences, whichever needs fewer launches.
import LoRARuntime

extension OpenCLBackend {
    public func attention(_ op: Attention) throws {
        try requireOwned(op)
        let s = op.shape
        let launches = HeadLaunches(s)
        let p = launches.probabilities(op.probabilities)
        for i in launches.range {
            try gemm(GEMM(m: s.queries, n: s.keys, k: s.headDim, batch: launches.batch, a: launches.operand(i, op.query),
                          b: launches.operand(i, op.key), transposeB: true, c: launches.operand(i, p),
                          triangle: .lowerC(offset: s.cached)))
        }
        try softmax(Softmax(x: op.probabilities, y: op.probabilities, scale: s.scale, causal: true))
        for i in launches.range {
            try gemm(GEMM(m: s.queries, n: s.headDim, k: s.keys, batch: launches.batch, a: launches.operand(i, p),
                          b: launches.operand(i, op.value), c: launches.operand(i, op.context),
                          triangle: .lowerA(offset: s.cached)))
        }
    }

    public func attentionBackward(_ op: AttentionBackward) throws {
        try requireOwned(op)
        let s = op.shape
        let launches = HeadLaunches(s)
        let scores = try empty(s.probabilityShape)
        let (p, ds) = (launches.probabilities(op.probabilities), launches.probabilities(scores))
        let (t, tk, d, batch) = (s.queries, s.keys, s.headDim, launches.batch)
        func x(_ i: Int, _ operand: HeadOperand) -> GEMMOperand { launches.operand(i, operand) }
        for i in launches.range {
            try gemm(GEMM(m: t, n: tk, k: d, batch: batch, a: x(i, op.dContext), b: x(i, op.value), transposeB: true,
                          c: x(i, ds), triangle: .lowerC(offset: s.cached)))
            try gemm(GEMM(m: tk, n: d, k: t, batch: batch, a: x(i, p), transposeA: true, b: x(i, op.dContext),
                          c: x(i, op.dValue), triangle: .upperA(offset: s.cached)))
        }
        try softmaxBackward(SoftmaxBackward(y: op.probabilities, dy: scores, dx: scores, scale: s.scale, causal: true))
        for i in launches.range {
            try gemm(GEMM(m: t, n: d, k: tk, batch: batch, a: x(i, ds), b: x(i, op.key), c: x(i, op.dQuery),
                          triangle: .lowerA(offset: s.cached)))
            try gemm(GEMM(m: tk, n: d, k: t, batch: batch, a: x(i, ds), transposeA: true, b: x(i, op.query),
                          c: x(i, op.dKey), triangle: .upperA(offset: s.cached)))
        }
    }
}

/// The (sequence, head) matrices of attention as batched GEMM launches.
private struct HeadLaunches {
    let shape: AttentionShape
    init(_ shape: AttentionShape) { self.shape = shape }

    private var overHeads: Bool { shape.heads >= shape.sequences }
    var range: Range<Int> { 0..<(overHeads ? shape.sequences : shape.heads) }
    var batch: Int { overHeads ? shape.heads : shape.sequences }

    /// Launch i's operand: sequence i's heads, or head i's sequences.
    func operand(_ i: Int, _ x: HeadOperand) -> GEMMOperand {
        overHeads ? GEMMOperand(x.tensor, offset: x.start(i, 0), ld: x.ld, batchStride: x.headStride)
            : GEMMOperand(x.tensor, offset: x.start(0, i), ld: x.ld, batchStride: x.sequenceStride)
    }

    /// A `[B, H, T, Tk]` tensor as a multi-head operand.
    func probabilities(_ p: Tensor) -> HeadOperand {
        let (t, tk) = (shape.queries, shape.keys)
        return HeadOperand(p, ld: tk, sequenceStride: shape.heads * t * tk, headStride: t * tk)
    }
}
