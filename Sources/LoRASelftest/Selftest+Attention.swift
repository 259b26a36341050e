// The attention checks, forward and backward: plain multi-head attention with q, k and v read where a fused QKV
// projection leaves them ([N, 3C], heads side by side), grouped-query and multi-query attention, a KV cache (keys
// cached before the queries, down to one decoding query), and a sliding window. On OpenCL attention is batched GEMMs
// with causal triangles (matmul.cl) around the causal, windowed softmax (softmax.cl).
// Bound: normwise 4·(D + Tk + ulps)·u: the scores sum D products, the softmax and P·V sum Tk terms, exp is within a
// few ulp (Comparison.swift); dQ and dK add one more product over Tk, dV one over T.
import SwiftLoRA

/// One attention problem: B sequences, H query heads over Hkv kv heads of width D, T queries after Tk − T cached keys.
struct AttentionProblem: Sendable, CustomStringConvertible {
    let b: Int, h: Int, kvHeads: Int, d: Int, t: Int, tk: Int
    var window: Int? = nil
    /// q, k and v as column blocks of one [B·T, 3·H·D] tensor (needs Hkv = H and Tk = T).
    var packed = false
    let scale: Float = 0.35

    var description: String {
        "B\(b) H\(h)/\(kvHeads) D\(d) T\(t) Tk\(tk)" + (window.map { " window \($0)" } ?? "") + (packed ? " packed qkv" : "")
    }

    var tolerance: Double { 4 * (Double(d + tk) + transcendentalULPs) * unitRoundoff }

    /// (probabilities, context) forward, then (dQuery, dKey, dValue) when `backward`.
    func run(on backend: any Backend, seed: UInt64, backward: Bool) throws -> [[Float]] {
        let shape = try AttentionShape(sequences: b, heads: h, kvHeads: kvHeads, headDim: d, queries: t, keys: tk,
                                       scale: scale, window: window)
        let (width, kvWidth) = (h * d, kvHeads * d)
        let query: HeadOperand, key: HeadOperand, value: HeadOperand
        if packed {
            let qkv = try backend.upload(randomValues(b * t * 3 * width, seed: seed, bound: 2), shape: [b * t, 3 * width])
            func view(_ part: Int) -> HeadOperand {
                HeadOperand(qkv, offset: part * width, ld: 3 * width, sequenceStride: t * 3 * width, headStride: d)
            }
            (query, key, value) = (view(0), view(1), view(2))
        } else {
            let q = try backend.upload(randomValues(b * t * width, seed: seed, bound: 2), shape: [b * t, width])
            let k = try backend.upload(randomValues(b * tk * kvWidth, seed: seed + 1, bound: 2), shape: [b, tk, kvWidth])
            let v = try backend.upload(randomValues(b * tk * kvWidth, seed: seed + 2), shape: [b, tk, kvWidth])
            query = HeadOperand(q, ld: width, sequenceStride: t * width, headStride: d)
            key = HeadOperand(k, ld: kvWidth, sequenceStride: tk * kvWidth, headStride: d)
            value = HeadOperand(v, ld: kvWidth, sequenceStride: tk * kvWidth, headStride: d)
        }
        let probabilities = try backend.empty(shape.probabilityShape)
        let context = try backend.empty([b * t, width])
        func queryLike(_ x: Tensor) -> HeadOperand { HeadOperand(x, ld: width, sequenceStride: t * width, headStride: d) }
        func kvLike(_ x: Tensor) -> HeadOperand { HeadOperand(x, ld: kvWidth, sequenceStride: tk * kvWidth, headStride: d) }
        try backend.attention(Attention(shape, query: query, key: key, value: value, probabilities: probabilities,
                                        context: queryLike(context)))
        guard backward else { return [try probabilities.toArray(), try context.toArray()] }
        let dContext = try backend.upload(randomValues(b * t * width, seed: seed + 3), shape: [b * t, width])
        // Outputs start as garbage: backward writes them, never accumulates.
        let dQuery = try backend.upload(randomValues(b * t * width, seed: seed + 4), shape: [b * t, width])
        let dKey = try backend.upload(randomValues(b * tk * kvWidth, seed: seed + 5), shape: [b, tk, kvWidth])
        let dValue = try backend.upload(randomValues(b * tk * kvWidth, seed: seed + 6), shape: [b, tk, kvWidth])
        try backend.attentionBackward(AttentionBackward(
            shape, query: query, key: key, value: value, probabilities: probabilities, dContext: queryLike(dContext),
            dQuery: queryLike(dQuery), dKey: kvLike(dKey), dValue: kvLike(dValue)))
        return [try dQuery.toArray(), try dKey.toArray(), try dValue.toArray()]
    }

    func compare(_ selftest: Selftest, seed: UInt64, backward: Bool) throws -> [Comparison] {
        let (device, cpu) = try selftest.both { try run(on: $0, seed: seed, backward: backward) }
        let names = backward ? ["dQuery", "dKey", "dValue"] : ["probabilities", "context"]
        // dQ and dK sum one more product over the keys (dV over the queries) than the forward's outputs.
        let bound = tolerance + (backward ? 4 * Double(max(t, tk)) * unitRoundoff : 0)
        return names.indices.map {
            Comparison.measure(device[$0], cpu[$0], tolerance: bound, label: "\(description) \(names[$0])")
        }
    }
}

extension Selftest {
    static let attentionProblems: [(name: String, problems: [AttentionProblem])] = [
        ("attention", [AttentionProblem(b: 2, h: 4, kvHeads: 4, d: 16, t: 37, tk: 37, packed: true),
                       AttentionProblem(b: 1, h: 3, kvHeads: 3, d: 24, t: 70, tk: 70)]),
        ("attention.gqa", [AttentionProblem(b: 2, h: 6, kvHeads: 2, d: 16, t: 33, tk: 33),
                           AttentionProblem(b: 3, h: 4, kvHeads: 1, d: 8, t: 17, tk: 17)]),
        ("attention.kv_cache", [AttentionProblem(b: 2, h: 4, kvHeads: 2, d: 8, t: 5, tk: 40),
                                AttentionProblem(b: 3, h: 4, kvHeads: 4, d: 16, t: 1, tk: 29)]),
        ("attention.sliding_window", [AttentionProblem(b: 1, h: 4, kvHeads: 2, d: 16, t: 40, tk: 40, window: 7),
                                      AttentionProblem(b: 2, h: 2, kvHeads: 1, d: 8, t: 6, tk: 30, window: 9)]),
    ]

    static var attentionChecks: [Check] {
        [false, true].flatMap { backward in
            attentionProblems.map { name, problems in
                Check(name: name + (backward ? ".backward" : "")) { selftest in
                    .compared(try problems.enumerated().flatMap { index, problem in
                        try problem.compare(selftest, seed: 2000 + UInt64(index) * 10, backward: backward)
                    })
                }
            }
        }
    }
}
