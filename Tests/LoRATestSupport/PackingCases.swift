// Packed rows against their examples run one at a time, for any backend: attention with segment starts, and RoPE
// with per-row positions. Both sides come back in the packed layout, so a test compares them element for element.
import SwiftLoRA

extension TrainingOpRunner {
    /// Probabilities `[B, H, T, T]`, context, dq, dk and dv of one attention forward and backward.
    public typealias AttentionResults = (p: [Float], context: [Float], dq: [Float], dk: [Float], dv: [Float])

    /// Attention forward and backward over B rows of T tokens packing examples of `segments` lengths (each row's
    /// lengths sum to T), once packed with segment starts and once example by example (B = 1, T = its length), the
    /// latter's results written where the packed layout has them (probabilities outside an example's block 0).
    public func packedAttention(segments: [[Int]], heads h: Int, kvHeads: Int, d: Int, window: Int? = nil)
        throws -> (packed: AttentionResults, separate: AttentionResults) {
        let be = backend, b = segments.count, t = segments[0].reduce(0, +)
        precondition(segments.allSatisfy { $0.reduce(0, +) == t && $0.allSatisfy { $0 >= 1 } }, "segments must fill each row")
        let (w, wkv) = (h * d, kvHeads * d)
        let scale: Float = 0.4
        let q = randomValues(b * t * w, seed: 71).map { 2 * $0 }, dctx = randomValues(b * t * w, seed: 74)
        let k = randomValues(b * t * wkv, seed: 72).map { 2 * $0 }, v = randomValues(b * t * wkv, seed: 73)

        /// One run over `n` sequences of `length` tokens from these arrays.
        func run(_ q: [Float], _ k: [Float], _ v: [Float], _ dctx: [Float], sequences n: Int, length: Int,
                 starts: [Int]?) throws -> AttentionResults {
            let shape = try AttentionShape(sequences: n, heads: h, kvHeads: kvHeads, headDim: d, queries: length,
                                           keys: length, scale: scale, window: window)
            func view(_ x: Tensor, _ width: Int) -> HeadOperand { HeadOperand(x, ld: width, sequenceStride: length * width, headStride: d) }
            let rows = n * length
            let (qt, kt, vt) = (try be.upload(q, shape: [rows, w]), try be.upload(k, shape: [rows, wkv]), try be.upload(v, shape: [rows, wkv]))
            let p = try be.empty(shape.probabilityShape), context = try be.empty([rows, w])
            let startTensor = try starts.map { try be.upload($0.map(Int32.init), shape: [n, length]) }
            try be.attention(Attention(shape, query: view(qt, w), key: view(kt, wkv), value: view(vt, wkv), probabilities: p,
                                       context: view(context, w), segmentStarts: startTensor))
            let (dq, dk, dv) = (try be.empty([rows, w]), try be.empty([rows, wkv]), try be.empty([rows, wkv]))
            try be.attentionBackward(AttentionBackward(shape, query: view(qt, w), key: view(kt, wkv), value: view(vt, wkv),
                                                       probabilities: p, dContext: view(be.upload(dctx, shape: [rows, w]), w),
                                                       dQuery: view(dq, w), dKey: view(dk, wkv), dValue: view(dv, wkv),
                                                       segmentStarts: startTensor))
            return (try p.toArray(), try context.toArray(), try dq.toArray(), try dk.toArray(), try dv.toArray())
        }

        let starts = segments.flatMap { lengths in
            lengths.indices.flatMap { n in Array(repeating: lengths[..<n].reduce(0, +), count: lengths[n]) }
        }
        let packed = try run(q, k, v, dctx, sequences: b, length: t, starts: starts)

        var separate: AttentionResults = ([Float](repeating: 0, count: b * h * t * t), [Float](repeating: 0, count: q.count),
                                          [Float](repeating: 0, count: q.count), [Float](repeating: 0, count: k.count),
                                          [Float](repeating: 0, count: k.count))
        for (row, lengths) in segments.enumerated() {
            var first = 0
            for length in lengths {
                let tokens = row * t + first..<row * t + first + length
                func slice(_ x: [Float], _ width: Int) -> [Float] { Array(x[tokens.lowerBound * width..<tokens.upperBound * width]) }
                let alone = try run(slice(q, w), slice(k, wkv), slice(v, wkv), slice(dctx, w), sequences: 1, length: length, starts: nil)
                separate.context.replaceSubrange(tokens.lowerBound * w..<tokens.upperBound * w, with: alone.context)
                separate.dq.replaceSubrange(tokens.lowerBound * w..<tokens.upperBound * w, with: alone.dq)
                separate.dk.replaceSubrange(tokens.lowerBound * wkv..<tokens.upperBound * wkv, with: alone.dk)
                separate.dv.replaceSubrange(tokens.lowerBound * wkv..<tokens.upperBound * wkv, with: alone.dv)
                for head in 0..<h {
                    for i in 0..<length {
                        let to = ((row * h + head) * t + first + i) * t + first
                        separate.p.replaceSubrange(to..<to + length, with: alone.p[(head * length + i) * length..<(head * length + i + 1) * length])
                    }
                }
                first += length
            }
        }
        return (packed, separate)
    }

    /// RoPE (forward and inverse) of a RoPECase's x with per-row `positions` (an int32 tensor), out of place.
    public func rope(_ c: RoPECase, positions: [Int]) throws -> (y: [Float], inverse: [Float]) {
        let b = backend, shape = [c.b * c.t, c.heads * c.d], tableShape = [c.positions, c.d / 2]
        let (cos, sin) = (try b.upload(c.cos, shape: tableShape), try b.upload(c.sin, shape: tableShape))
        let rowPositions = try b.upload(positions.map(Int32.init), shape: [positions.count])
        var results: [[Float]] = []
        for inverse in [false, true] {
            let x = try b.upload(c.x, shape: shape), y = try b.empty(shape)
            try b.rope(RoPE(input: x, output: y, heads: c.heads, headDim: c.d, sequenceLength: c.t, start: 0,
                            cos: cos, sin: sin, inverse: inverse, positions: rowPositions))
            results.append(try y.toArray())
        }
        return (results[0], results[1])
    }
}

// MARK: - Models

/// The first logit where packed rows differ from their examples run alone: the examples packed into windows of
/// `length` (Packing.pack), one packed forward, then each example's own forward; nil when all agree.
public func packedLogitsMismatch(_ model: any LanguageModel, examples: [[Int]], length: Int,
                                 atol: Float = 1e-5, rtol: Float = 1e-4) throws -> String? {
    let windows = try Packing.pack(examples, labels: examples, length: length)
    let batch = LabeledBatch.packed(windows, padID: 0)
    let t = batch.tokens[0].count, v = model.vocabularySize
    let packed = try model.forward(batch.tokens, segments: batch.segments!).toArray()
    // Windows hold examples longest first; find each example's rows by its ids.
    var used = Set<Int>()
    for (row, window) in windows.enumerated() {
        var first = 0
        for length in window.lengths {
            let ids = Array(window.tokens[first..<first + length])
            guard let index = examples.indices.first(where: { !used.contains($0) && examples[$0] == ids }) else {
                return "window \(row) holds ids that are no example's"
            }
            used.insert(index)
            let alone = try model.forward([ids]).toArray()
            let rows = Array(packed[(row * t + first) * v..<(row * t + first + length) * v])
            if let mismatch = firstMismatch(rows, alone, atol: atol, rtol: rtol) { return "example \(index): \(mismatch)" }
            first += length
        }
    }
    return used.count == examples.count ? nil : "\(examples.count - used.count) examples were not packed"
}

/// Every trainable gradient of `model` (zeroed first) after one backward of `run`'s loss.
public func trainableGradients(of model: any LanguageModel, _ run: () throws -> Void) throws -> [[Float]] {
    try model.zeroGradients()
    try run()
    return try model.trainableParameters.map { try $0.gradient.toArray() }
}

/// The gradients of the packed batch of `examples` (windows of `length`, one batch) against the sum over examples of
/// each example's own gradient (of its mean loss) scaled by its share of the trained targets; returns the parameters
/// whose gradients differ beyond atol + rtol·|reference|.
public func packedGradientMismatches(_ model: any LanguageModel, examples: [[Int]], labels: [[Int]], length: Int,
                                     atol: Float = 1e-5, rtol: Float = 1e-3) throws -> [String] {
    let batch = LabeledBatch.packed(try Packing.pack(examples, labels: labels, length: length), padID: 0)
    var predictions = 0
    let packed = try trainableGradients(of: model) {
        predictions = try model.loss(batch.tokens, labels: batch.labels, segments: batch.segments, gradients: true).predictions
    }
    var summed = packed.map { [Float](repeating: 0, count: $0.count) }
    for (ids, exampleLabels) in zip(examples, labels) where exampleLabels.dropFirst().contains(where: { $0 != -100 }) {
        var count = 0
        let own = try trainableGradients(of: model) { count = try model.loss([ids], labels: [exampleLabels], gradients: true).predictions }
        let share = Float(count) / Float(predictions)
        for p in summed.indices { for i in summed[p].indices { summed[p][i] += share * own[p][i] } }
    }
    let names = model.trainableParameters.map(\.name)
    return names.indices.compactMap { p in
        firstMismatch(packed[p], summed[p], atol: atol, rtol: rtol).map { "\(names[p]): \($0)" }
    }
}
