// The training ops run the same way on any backend, so the CPU tests can hold them against Double references
// and the OpenCL tests against the CPU. Inputs come from `randomValues` with fixed seeds.
import Foundation
import SwiftLoRA

/// Runs each training op on one backend and returns what it wrote.
public struct TrainingOpRunner {
    public let backend: any Backend
    public init(_ backend: any Backend) { self.backend = backend }

    /// Layer-norm inputs: rows of x with a large offset (the variance must not cancel), gamma and beta.
    public static func layerNormInputs(rows: Int, cols: Int) -> (x: [Float], gamma: [Float], beta: [Float]) {
        (randomValues(rows * cols, seed: 21).enumerated().map { 3 * $0.element + Float($0.offset % 5) + 10 },
         randomValues(cols, seed: 22).map { 1 + $0 / 2 }, randomValues(cols, seed: 23))
    }

    /// (y, mean, rstd) of a layer norm with epsilon 1e-5.
    public func layerNorm(rows: Int, cols: Int) throws -> (y: [Float], mean: [Float], rstd: [Float]) {
        let (xv, gv, bv) = Self.layerNormInputs(rows: rows, cols: cols)
        let b = backend
        let y = try b.empty([rows, cols]), mean = try b.empty([rows]), rstd = try b.empty([rows])
        try b.layerNorm(LayerNorm(x: b.upload(xv, shape: [rows, cols]), gamma: b.upload(gv, shape: [cols]),
                                  beta: b.upload(bv, shape: [cols]), y: y, mean: mean, rstd: rstd))
        return (try y.toArray(), try mean.toArray(), try rstd.toArray())
    }

    /// (dx, dgamma, dbeta) of a layer norm's backward for upstream gradient `randomValues(seed: 24)`.
    /// dx starts as `randomValues(seed: 25)` (seen only when accumulating), or is dy itself when `inPlace`;
    /// dgamma and dbeta start at 0.5.
    public func layerNormBackward(rows: Int, cols: Int, accumulate: Bool = false, inPlace: Bool = false)
        throws -> (dx: [Float], dgamma: [Float], dbeta: [Float]) {
        let (xv, gv, bv) = Self.layerNormInputs(rows: rows, cols: cols)
        let b = backend
        let x = try b.upload(xv, shape: [rows, cols]), gamma = try b.upload(gv, shape: [cols])
        let mean = try b.empty([rows]), rstd = try b.empty([rows])
        try b.layerNorm(LayerNorm(x: x, gamma: gamma, beta: b.upload(bv, shape: [cols]), y: b.empty([rows, cols]),
                                  mean: mean, rstd: rstd))
        let dy = try b.upload(randomValues(rows * cols, seed: 24), shape: [rows, cols])
        let dx = inPlace ? dy : try b.upload(randomValues(rows * cols, seed: 25), shape: [rows, cols])
        let dgamma = try b.upload(Array(repeating: 0.5, count: cols), shape: [cols])
        let dbeta = try b.upload(Array(repeating: 0.5, count: cols), shape: [cols])
        try b.layerNormBackward(LayerNormBackward(x: x, gamma: gamma, mean: mean, rstd: rstd, dy: dy, dx: dx,
                                                  dgamma: dgamma, dbeta: dbeta, accumulate: accumulate))
        return (try dx.toArray(), try dgamma.toArray(), try dbeta.toArray())
    }

    /// (gelu(x), dy·gelu′(x)) with dy = `randomValues(seed: 26)`; the backward runs in place on dy.
    public func gelu(_ values: [Float]) throws -> (y: [Float], dx: [Float]) {
        let b = backend
        let x = try b.upload(values, shape: [values.count]), y = try b.empty([values.count])
        try b.gelu(GELU(x: x, y: y))
        let dy = try b.upload(randomValues(values.count, seed: 26), shape: [values.count])
        try b.geluBackward(GELUBackward(x: x, dy: dy, dx: dy))
        return (try y.toArray(), try dy.toArray())
    }

    /// Logits `6·randomValues(seed: 27)` for a cross-entropy case.
    public static func logits(rows: Int, classes: Int) -> [Float] { randomValues(rows * classes, seed: 27).map { 6 * $0 } }

    /// (losses, dlogits) of cross-entropy with gradient scale 0.25; dlogits empty without the gradient.
    public func crossEntropy(rows: Int, classes: Int, targets: [Int32], gradient: Bool = true, inPlace: Bool = false)
        throws -> (losses: [Float], dlogits: [Float]) {
        let b = backend
        let logits = try b.upload(Self.logits(rows: rows, classes: classes), shape: [rows, classes])
        let losses = try b.empty([rows])
        let dlogits = gradient ? (inPlace ? logits : try b.empty([rows, classes])) : nil
        try b.crossEntropy(CrossEntropy(logits: logits, targets: b.upload(targets, shape: [rows]), losses: losses,
                                        dlogits: dlogits, gradientScale: 0.25))
        return (try losses.toArray(), try dlogits?.toArray() ?? [])
    }

    /// AdamW's settings in the tests.
    public struct AdamWSettings: Sendable {
        public var learningRate: Float = 1e-2, beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8
        public var weightDecay: Float = 0.1, gradientScale: Float = 1
        public init() {}
    }

    /// Parameters `randomValues(seed: 28)` after `steps` AdamW steps, gradient `randomValues(seed: 29 + step)` at each;
    /// returns (p, m, v).
    public func adamW(count: Int, steps: Int, settings: AdamWSettings = .init()) throws -> (p: [Float], m: [Float], v: [Float]) {
        let b = backend
        let p = try b.upload(randomValues(count, seed: 28), shape: [count])
        let m = try b.zeros([count]), v = try b.zeros([count])
        for step in 1...steps {
            let g = try b.upload(randomValues(count, seed: 29 + UInt64(step)), shape: [count])
            try b.adamW(AdamW(parameters: p, gradients: g, firstMoment: m, secondMoment: v,
                              learningRate: settings.learningRate, beta1: settings.beta1, beta2: settings.beta2,
                              epsilon: settings.epsilon, weightDecay: settings.weightDecay, step: step,
                              gradientScale: settings.gradientScale))
        }
        return (try p.toArray(), try m.toArray(), try v.toArray())
    }

    /// The reduction of `values`, into a result that starts at 0.5 (seen only when accumulating).
    public func reduce(_ values: [Float], _ kind: Reduction.Kind, accumulate: Bool = false) throws -> Float {
        let b = backend
        let result = try b.upload([0.5], shape: [1])
        try b.reduce(Reduction(kind, of: b.upload(values, shape: [values.count]), into: result, accumulate: accumulate))
        return try result.toArray()[0]
    }

    /// Token then position embeddings, added: ids `tokens` into a [vocab, width] table `randomValues(seed: 33)`,
    /// positions 0..<count into a [count, width] table `randomValues(seed: 34)`.
    /// The table is stored as `tableType` (its values `randomValues(seed: 33)` rounded to that dtype).
    public func embedding(tokens: [Int32], vocab: Int, width: Int, tableType: DType = .float32) throws -> [Float] {
        let b = backend
        let table = try b.converted(b.upload(randomValues(vocab * width, seed: 33), shape: [vocab, width]), to: tableType)
        let positions = try b.upload(randomValues(tokens.count * width, seed: 34), shape: [tokens.count, width])
        let out = try b.empty([tokens.count, width])
        try b.embedding(EmbeddingLookup(table: table, indices: b.upload(tokens, shape: [tokens.count]), output: out))
        let order = try b.upload((0..<tokens.count).map { Int32($0) }, shape: [tokens.count])
        try b.embedding(EmbeddingLookup(table: positions, indices: order, output: out, accumulate: true))
        return try out.toArray()
    }

    /// Attention-shaped batched GEMM: per head h, `out[:, h·d..<(h+1)·d] = q_h · k_hᵀ · v_h`-style products where
    /// q, k, v are column blocks of one [t, 3·heads·d] matrix and the output heads sit side by side in [t, heads·d].
    /// Returns (scores [heads, t, t], out [t, heads·d]).
    public func headsGEMM(tokens t: Int, heads: Int, dim d: Int) throws -> (scores: [Float], out: [Float]) {
        let b = backend, width = heads * d
        let qkv = try b.upload(randomValues(t * 3 * width, seed: 35), shape: [t, 3 * width])
        let scores = try b.empty([heads, t, t]), out = try b.empty([t, width])
        try b.gemm(GEMM(m: t, n: t, k: d, batch: heads, a: GEMMOperand(qkv, ld: 3 * width, batchStride: d),
                        b: GEMMOperand(qkv, offset: width, ld: 3 * width, batchStride: d), transposeB: true,
                        c: GEMMOperand(scores, ld: t, batchStride: t * t)))
        try b.gemm(GEMM(m: t, n: d, k: t, batch: heads, a: GEMMOperand(scores, ld: t, batchStride: t * t),
                        b: GEMMOperand(qkv, offset: 2 * width, ld: 3 * width, batchStride: d),
                        c: GEMMOperand(out, ld: width, batchStride: d)))
        return (try scores.toArray(), try out.toArray())
    }

    /// The attention op's inputs for B sequences, H query heads and Hkv kv heads of width D, T queries after Tk − T
    /// cached keys, an optional window: q and the context in `[B·T, H·D]` tensors, k and v in `[B, Tk, Hkv·D]` ones
    /// (a cache's layout), dContext like q. With `segments` (per sequence, example lengths summing to T), the rows
    /// are packed: query i sees keys from its example's start on (the first example's start is key 0, so it sees the
    /// cached keys; a later one's is Tk − T + its first query).
    public struct AttentionCase: Sendable, CustomStringConvertible {
        public let b: Int, h: Int, kvHeads: Int, d: Int, t: Int, tk: Int
        public let window: Int?
        public let segments: [[Int]]?
        public let scale: Float = 0.4
        public init(b: Int, h: Int, kvHeads: Int? = nil, d: Int, t: Int, tk: Int, window: Int? = nil, segments: [[Int]]? = nil) {
            (self.b, self.h, self.kvHeads, self.d, self.t, self.tk, self.window) = (b, h, kvHeads ?? h, d, t, tk, window)
            precondition(segments.map { $0.count == b && $0.allSatisfy { $0.reduce(0, +) == t } } ?? true, "segments must fill each sequence")
            self.segments = segments
        }
        /// `[B·T]`: each query's first visible key (nil without segments).
        public var segmentStarts: [Int]? {
            segments.map { rows in
                rows.flatMap { lengths in
                    var (starts, at) = ([Int](), 0)
                    for length in lengths {
                        starts += Array(repeating: at == 0 ? 0 : tk - t + at, count: length)
                        at += length
                    }
                    return starts
                }
            }
        }
        public var q: [Float] { randomValues(b * t * h * d, seed: 41).map { 2 * $0 } }
        public var k: [Float] { randomValues(b * tk * kvHeads * d, seed: 42).map { 2 * $0 } }
        public var v: [Float] { randomValues(b * tk * kvHeads * d, seed: 43) }
        public var dContext: [Float] { randomValues(b * t * h * d, seed: 44) }
        public var description: String {
            "B\(b) H\(h)/\(kvHeads) D\(d) T\(t) Tk\(tk)" + (window.map { " W\($0)" } ?? "")
                + (segments.map { " segments \($0)" } ?? "")
        }
    }

    /// Attention forward and backward: probabilities `[B, H, T, Tk]`, context, dq, dk, dv.
    public func attention(_ c: AttentionCase) throws -> (p: [Float], context: [Float], dq: [Float], dk: [Float], dv: [Float]) {
        let be = backend, w = c.h * c.d, wkv = c.kvHeads * c.d
        let shape = try AttentionShape(sequences: c.b, heads: c.h, kvHeads: c.kvHeads, headDim: c.d, queries: c.t,
                                       keys: c.tk, scale: c.scale, window: c.window)
        func rows(_ x: Tensor, _ n: Int) -> HeadOperand { HeadOperand(x, ld: w, sequenceStride: n * w, headStride: c.d) }
        func kvRows(_ x: Tensor) -> HeadOperand { HeadOperand(x, ld: wkv, sequenceStride: c.tk * wkv, headStride: c.d) }
        let (q, k, v) = (try be.upload(c.q, shape: [c.b * c.t, w]), try be.upload(c.k, shape: [c.b * c.tk, wkv]),
                         try be.upload(c.v, shape: [c.b * c.tk, wkv]))
        let p = try be.empty(shape.probabilityShape), context = try be.empty([c.b * c.t, w])
        let starts = try c.segmentStarts.map { try be.upload($0.map(Int32.init), shape: [c.b, c.t]) }
        try be.attention(Attention(shape, query: rows(q, c.t), key: kvRows(k), value: kvRows(v), probabilities: p,
                                   context: rows(context, c.t), segmentStarts: starts))
        let dctx = try be.upload(c.dContext, shape: [c.b * c.t, w])
        let (dq, dk, dv) = (try be.empty([c.b * c.t, w]), try be.empty([c.b * c.tk, wkv]), try be.empty([c.b * c.tk, wkv]))
        try be.attentionBackward(AttentionBackward(shape, query: rows(q, c.t), key: kvRows(k), value: kvRows(v),
                                                   probabilities: p, dContext: rows(dctx, c.t), dQuery: rows(dq, c.t),
                                                   dKey: kvRows(dk), dValue: kvRows(dv), segmentStarts: starts))
        return (try p.toArray(), try context.toArray(), try dq.toArray(), try dk.toArray(), try dv.toArray())
    }

    /// RMS-norm inputs: rows of x with a large offset on some (the mean square must not be taken around a mean)
    /// and gamma.
    public static func rmsNormInputs(rows: Int, cols: Int) -> (x: [Float], gamma: [Float]) {
        (randomValues(rows * cols, seed: 51).enumerated().map { 3 * $0.element + Float($0.offset / cols % 3) * 4 },
         randomValues(cols, seed: 52).map { 1 + $0 / 2 })
    }

    /// (y, rstd) of an RMS norm with epsilon 1e-6, out of place and (checked equal) in place.
    public func rmsNorm(rows: Int, cols: Int) throws -> (y: [Float], rstd: [Float]) {
        let (xv, gv) = Self.rmsNormInputs(rows: rows, cols: cols)
        let b = backend
        let x = try b.upload(xv, shape: [rows, cols]), gamma = try b.upload(gv, shape: [cols])
        let y = try b.empty([rows, cols]), rstd = try b.empty([rows])
        try b.rmsNorm(RMSNorm(x: x, gamma: gamma, y: y, rstd: rstd, epsilon: 1e-6))
        try b.rmsNorm(RMSNorm(x: x, gamma: gamma, y: x, rstd: nil, epsilon: 1e-6))
        let (outOfPlace, inPlace) = (try y.toArray(), try x.toArray())
        precondition(inPlace == outOfPlace, "in-place RMS norm differs")
        return (outOfPlace, try rstd.toArray())
    }

    /// (dx, dgamma) of an RMS norm's backward for upstream gradient `randomValues(seed: 53)`. dx starts as
    /// `randomValues(seed: 54)` (seen only when accumulating), or is dy itself when `inPlace`; dgamma starts at 0.5.
    public func rmsNormBackward(rows: Int, cols: Int, accumulate: Bool = false, inPlace: Bool = false)
        throws -> (dx: [Float], dgamma: [Float]) {
        let (xv, gv) = Self.rmsNormInputs(rows: rows, cols: cols)
        let b = backend
        let x = try b.upload(xv, shape: [rows, cols]), gamma = try b.upload(gv, shape: [cols]), rstd = try b.empty([rows])
        try b.rmsNorm(RMSNorm(x: x, gamma: gamma, y: b.empty([rows, cols]), rstd: rstd, epsilon: 1e-6))
        let dy = try b.upload(randomValues(rows * cols, seed: 53), shape: [rows, cols])
        let dx = inPlace ? dy : try b.upload(randomValues(rows * cols, seed: 54), shape: [rows, cols])
        let dgamma = try b.upload(Array(repeating: 0.5, count: cols), shape: [cols])
        try b.rmsNormBackward(RMSNormBackward(x: x, gamma: gamma, rstd: rstd, dy: dy, dx: dx, dgamma: dgamma,
                                              accumulate: accumulate))
        return (try dx.toArray(), try dgamma.toArray())
    }

    /// SwiGLU of gate `gates` and up `randomValues(seed: 55)`, and its backward for dy `randomValues(seed: 56)`:
    /// out of place, then (checked equal) in place into gate and up.
    public func swiglu(_ gates: [Float]) throws -> (y: [Float], dGate: [Float], dUp: [Float]) {
        let b = backend, n = gates.count
        let (upValues, dyValues) = (randomValues(n, seed: 55), randomValues(n, seed: 56))
        let gate = try b.upload(gates, shape: [n]), up = try b.upload(upValues, shape: [n]), y = try b.empty([n])
        try b.swiglu(SwiGLU(gate: gate, up: up, y: y))
        let dy = try b.upload(dyValues, shape: [n])
        let (dGate, dUp) = (try b.empty([n]), try b.empty([n]))
        try b.swigluBackward(SwiGLUBackward(gate: gate, up: up, dy: dy, dGate: dGate, dUp: dUp))
        let result = (try y.toArray(), try dGate.toArray(), try dUp.toArray())
        try b.swigluBackward(SwiGLUBackward(gate: gate, up: up, dy: dy, dGate: gate, dUp: up))
        let (gateAfter, upAfter) = (try gate.toArray(), try up.toArray())
        precondition(gateAfter == result.1 && upAfter == result.2, "in-place SwiGLU backward differs")
        let inPlace = try b.upload(gates, shape: [n])
        try b.swiglu(SwiGLU(gate: inPlace, up: b.upload(upValues, shape: [n]), y: inPlace))
        let inPlaceY = try inPlace.toArray()
        precondition(inPlaceY == result.0, "in-place SwiGLU differs")
        return result
    }

    /// A rotary-embedding case: B sequences of T rows of H heads of width D at positions start..<start + T, tables
    /// of `positions` rows (random angles, scaled by 1.5 as an attention factor would be).
    public struct RoPECase: Sendable, CustomStringConvertible {
        public let b: Int, t: Int, heads: Int, d: Int, start: Int, positions: Int
        public init(b: Int, t: Int, heads: Int, d: Int, start: Int, positions: Int) {
            (self.b, self.t, self.heads, self.d, self.start, self.positions) = (b, t, heads, d, start, positions)
        }
        public var x: [Float] { randomValues(b * t * heads * d, seed: 57) }
        public var angles: [Double] { randomValues(positions * d / 2, seed: 58).map { Double($0) * 4 } }
        public var cos: [Float] { angles.map { Float(1.5 * Foundation.cos($0)) } }
        public var sin: [Float] { angles.map { Float(1.5 * Foundation.sin($0)) } }
        public var description: String { "B\(b) T\(t) H\(heads) D\(d) start \(start) of \(positions)" }
    }

    /// (rotated, inverse-rotated) x: out of place, then (checked equal) in place.
    public func rope(_ c: RoPECase) throws -> (y: [Float], inverse: [Float]) {
        let b = backend, shape = [c.b * c.t, c.heads * c.d], tableShape = [c.positions, c.d / 2]
        let (cos, sin) = (try b.upload(c.cos, shape: tableShape), try b.upload(c.sin, shape: tableShape))
        var results: [[Float]] = []
        for inverse in [false, true] {
            let x = try b.upload(c.x, shape: shape), y = try b.empty(shape)
            try b.rope(RoPE(input: x, output: y, heads: c.heads, headDim: c.d, sequenceLength: c.t, start: c.start,
                            cos: cos, sin: sin, inverse: inverse))
            try b.rope(RoPE(input: x, output: x, heads: c.heads, headDim: c.d, sequenceLength: c.t, start: c.start,
                            cos: cos, sin: sin, inverse: inverse))
            results.append(try y.toArray())
            let inPlace = try x.toArray()
            precondition(inPlace == results.last!, "in-place RoPE differs")
        }
        return (results[0], results[1])
    }

    /// Dropout with probability p and seed 9 of `randomValues(seed: 36)`, out of place and then in place.
    public func dropout(count: Int, probability: Float) throws -> [Float] {
        let b = backend
        let x = try b.upload(randomValues(count, seed: 36), shape: [count]), y = try b.empty([count])
        try b.dropout(Dropout(x: x, y: y, probability: probability, seed: 9))
        try b.dropout(Dropout(x: x, y: x, probability: probability, seed: 9))
        let (inPlace, outOfPlace) = (try x.toArray(), try y.toArray())
        precondition(inPlace == outOfPlace, "in-place dropout differs")
        return outOfPlace
    }

    /// Which of `count` elements dropout keeps when x is the part of a larger tensor starting at element `offset`.
    public func dropoutMask(count: Int, probability: Float, offset: UInt32) throws -> [Bool] {
        let b = backend
        let x = try b.upload([Float](repeating: 1, count: count), shape: [count]), y = try b.empty([count])
        try b.dropout(Dropout(x: x, y: y, probability: probability, seed: 9, indexOffset: offset))
        return try y.toArray().map { $0 != 0 }
    }

    /// The table gradient of an embedding lookup of `tokens` into a [vocab, width] table for upstream
    /// `randomValues(seed: 37)`, added to a gradient that starts at 0.25.
    public func embeddingBackward(tokens: [Int32], vocab: Int, width: Int) throws -> [Float] {
        let b = backend
        let dTable = try b.upload(Array(repeating: 0.25, count: vocab * width), shape: [vocab, width])
        try b.embeddingBackward(EmbeddingBackward(indices: b.upload(tokens, shape: [tokens.count]),
                                                  dOutput: b.upload(randomValues(tokens.count * width, seed: 37), shape: [tokens.count, width]),
                                                  dTable: dTable))
        return try dTable.toArray()
    }

    /// Three 4×5 blocks of a [6, 20] matrix (`randomValues(seed: 38)`, at offset 2, ld 20, stride 5) copied into a
    /// [3·7, 9] matrix of 0.5 (offset 1, ld 9, stride 63: one block per 7 rows).
    public func blockCopy() throws -> [Float] {
        let b = backend
        let source = try b.upload(randomValues(120, seed: 38), shape: [6, 20])
        let destination = try b.upload(Array(repeating: 0.5, count: 189), shape: [21, 9])
        try b.blockCopy(BlockCopy(rows: 4, cols: 5, batch: 3, from: GEMMOperand(source, offset: 2, ld: 20, batchStride: 5),
                                  to: GEMMOperand(destination, offset: 1, ld: 9, batchStride: 63)))
        return try destination.toArray()
    }
}
