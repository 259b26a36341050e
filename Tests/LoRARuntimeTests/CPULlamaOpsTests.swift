// The CPU ops Llama-family models add (RMS norm, rotary embedding, SwiGLU, grouped-query and sliding-window
// attention) against plain Double references, the gradients also against finite differences, every op the same
// bits on 1, 2 and 3 threads, and their validation.
import Foundation
import LoRARuntime
import LoRATestSupport
import Testing

@Suite("CPU Llama ops")
struct CPULlamaOpsTests {
    let run = TrainingOpRunner(CPUBackend.shared)

    @Test("RMS norm matches the reference, rstd included (SIMD widths crossed, odd sizes)",
          arguments: [(1, 1), (3, 7), (5, 16), (4, 17), (5, 33), (2, 768), (70, 129)])
    func rmsNorm(rows: Int, cols: Int) throws {
        let (x, gamma) = TrainingOpRunner.rmsNormInputs(rows: rows, cols: cols)
        let ref = ReferenceRMSNorm(x: x, gamma: gamma, cols: cols)
        let got = try run.rmsNorm(rows: rows, cols: cols)
        #expect(firstMismatch(got.y, ref.y, atol: 1e-5, rtol: 1e-5) == nil)
        #expect(firstMismatch(got.rstd, ref.rstd, atol: 1e-7, rtol: 1e-5) == nil)
    }

    @Test("RMS norm backward matches the reference: written, accumulated, in place",
          arguments: [(1, 1), (3, 7), (33, 50), (70, 129)])
    func rmsNormBackward(rows: Int, cols: Int) throws {
        let (x, gamma) = TrainingOpRunner.rmsNormInputs(rows: rows, cols: cols)
        let (dx, dgamma) = ReferenceRMSNorm(x: x, gamma: gamma, cols: cols).backward(randomValues(rows * cols, seed: 53))
        let written = try run.rmsNormBackward(rows: rows, cols: cols)
        #expect(firstMismatch(written.dx, dx, atol: 1e-5, rtol: 1e-4) == nil)
        #expect(firstMismatch(written.dgamma, dgamma.map { $0 + 0.5 }, atol: 1e-4, rtol: 1e-4) == nil)
        let start = randomValues(rows * cols, seed: 54).map(Double.init)
        let added = try run.rmsNormBackward(rows: rows, cols: cols, accumulate: true)
        #expect(firstMismatch(added.dx, zip(dx, start).map(+), atol: 1e-5, rtol: 1e-4) == nil)
        #expect(try run.rmsNormBackward(rows: rows, cols: cols, inPlace: true) == written)
    }

    @Test("the RMS norm reference's gradient matches finite differences")
    func rmsNormReferenceGradient() {
        let (rows, cols) = (2, 5)
        let (x, gamma) = TrainingOpRunner.rmsNormInputs(rows: rows, cols: cols)
        let dy = randomValues(rows * cols, seed: 53)
        func loss(_ x: [Double], _ gamma: [Double]) -> Double {
            zip(ReferenceRMSNorm(x: x, gamma: gamma, cols: cols).y, dy).reduce(0) { $0 + $1.0 * Double($1.1) }
        }
        let (xd, gd) = (x.map(Double.init), gamma.map(Double.init))
        let (dx, dgamma) = ReferenceRMSNorm(x: x, gamma: gamma, cols: cols).backward(dy)
        for i in x.indices {
            #expect(abs(centralDifference(xd, i) { loss($0, gd) } - dx[i]) < 1e-6, "dx[\(i)]")
        }
        for j in 0..<cols {
            #expect(abs(centralDifference(gd, j) { loss(xd, $0) } - dgamma[j]) < 1e-6, "dgamma[\(j)]")
        }
    }

    @Test("SwiGLU and its gradient match silu(g)·u and PyTorch's silu backward in Double, extremes included",
          arguments: [1, 15, 16, 17, 1000, 40_000])
    func swiglu(count: Int) throws {
        let extremes: [Float] = [0, -0.0, 1e-8, 30, -30, 100, -100, 1e30, -1e30]
        let gates = Array((randomValues(count, seed: 50).map { 8 * $0 } + extremes).prefix(max(count, extremes.count)))
        let got = try run.swiglu(gates)
        let (up, dy) = (randomValues(gates.count, seed: 55), randomValues(gates.count, seed: 56))
        let ref = gates.indices.map { referenceSwiGLU(Double(gates[$0]), Double(up[$0]), dy: Double(dy[$0])) }
        #expect(firstMismatch(got.y, ref.map(\.y), atol: 1e-6, rtol: 1e-5) == nil)
        #expect(firstMismatch(got.dGate, ref.map(\.dGate), atol: 1e-6, rtol: 1e-5) == nil)
        #expect(firstMismatch(got.dUp, ref.map(\.dUp), atol: 1e-6, rtol: 1e-5) == nil)
    }

    @Test("the SwiGLU reference's gradient matches finite differences")
    func swigluReferenceGradient() {
        for (g, u) in [(0.3, -1.2), (-2.5, 0.7), (4.0, 2.0), (0.0, 1.0)] {
            let ref = referenceSwiGLU(g, u, dy: 1)
            #expect(abs(centralDifference([g], 0) { referenceSwiGLU($0[0], u, dy: 1).y } - ref.dGate) < 1e-7)
            #expect(abs(centralDifference([u], 0) { referenceSwiGLU(g, $0[0], dy: 1).y } - ref.dUp) < 1e-7)
        }
    }

    static let ropeCases = [
        TrainingOpRunner.RoPECase(b: 1, t: 1, heads: 1, d: 2, start: 0, positions: 1),
        TrainingOpRunner.RoPECase(b: 2, t: 5, heads: 3, d: 6, start: 0, positions: 5),
        TrainingOpRunner.RoPECase(b: 2, t: 7, heads: 2, d: 64, start: 3, positions: 12),  // half = 32: whole vectors
        TrainingOpRunner.RoPECase(b: 3, t: 4, heads: 4, d: 34, start: 9, positions: 20),  // half = 17: one past
        TrainingOpRunner.RoPECase(b: 2, t: 129, heads: 3, d: 128, start: 1, positions: 200),  // split over the pool
    ]

    @Test("RoPE (rotate-half) and its inverse match the reference, out of place and in place", arguments: ropeCases)
    func rope(_ c: TrainingOpRunner.RoPECase) throws {
        let got = try run.rope(c)
        let (x, cos, sin) = (c.x.map(Double.init), c.cos.map(Double.init), c.sin.map(Double.init))
        let half = c.d / 2
        var (y, inverse) = ([Double](repeating: 0, count: x.count), [Double](repeating: 0, count: x.count))
        for row in 0..<c.b * c.t {
            let p = c.start + row % c.t
            for h in 0..<c.heads {
                let base = (row * c.heads + h) * c.d
                for i in 0..<half {
                    let (a, b, cs, sn) = (x[base + i], x[base + half + i], cos[p * half + i], sin[p * half + i])
                    (y[base + i], y[base + half + i]) = (a * cs - b * sn, b * cs + a * sn)
                    (inverse[base + i], inverse[base + half + i]) = (a * cs + b * sn, b * cs - a * sn)
                }
            }
        }
        #expect(firstMismatch(got.y, y, atol: 1e-6, rtol: 1e-5) == nil)
        #expect(firstMismatch(got.inverse, inverse, atol: 1e-6, rtol: 1e-5) == nil)
    }

    @Test("RoPE's inverse is its gradient: ⟨R·x, u⟩ = ⟨x, Rᵀ·u⟩ for the tables' rotation")
    func ropeAdjoint() throws {
        let c = TrainingOpRunner.RoPECase(b: 2, t: 6, heads: 2, d: 10, start: 2, positions: 8)
        let cpu = CPUBackend.shared, shape = [c.b * c.t, c.heads * c.d]
        let (cos, sin) = (try cpu.upload(c.cos, shape: [c.positions, c.d / 2]), try cpu.upload(c.sin, shape: [c.positions, c.d / 2]))
        let u = randomValues(c.x.count, seed: 59)
        func apply(_ values: [Float], inverse: Bool) throws -> [Float] {
            let t = try cpu.upload(values, shape: shape)
            try cpu.rope(RoPE(input: t, output: t, heads: c.heads, headDim: c.d, sequenceLength: c.t, start: c.start,
                              cos: cos, sin: sin, inverse: inverse))
            return try t.toArray()
        }
        func dot(_ a: [Float], _ b: [Float]) -> Double { zip(a, b).reduce(0) { $0 + Double($1.0) * Double($1.1) } }
        let (left, right) = (dot(try apply(c.x, inverse: false), u), dot(c.x, try apply(u, inverse: true)))
        #expect(abs(left - right) < 1e-4, "\(left) vs \(right)")
    }

    static let attentionCases = [
        TrainingOpRunner.AttentionCase(b: 2, h: 4, kvHeads: 1, d: 5, t: 19, tk: 19),
        TrainingOpRunner.AttentionCase(b: 2, h: 4, kvHeads: 2, d: 5, t: 19, tk: 19),
        TrainingOpRunner.AttentionCase(b: 2, h: 4, kvHeads: 4, d: 5, t: 19, tk: 19),
        TrainingOpRunner.AttentionCase(b: 3, h: 6, kvHeads: 2, d: 4, t: 13, tk: 21),  // KV-cache offset
        TrainingOpRunner.AttentionCase(b: 1, h: 6, kvHeads: 3, d: 8, t: 1, tk: 30),  // one decoded token
        TrainingOpRunner.AttentionCase(b: 2, h: 4, kvHeads: 2, d: 5, t: 37, tk: 37, window: 8),
        TrainingOpRunner.AttentionCase(b: 2, h: 4, kvHeads: 1, d: 17, t: 20, tk: 33, window: 5),  // window and cache
        TrainingOpRunner.AttentionCase(b: 1, h: 2, kvHeads: 2, d: 4, t: 9, tk: 12, window: 1),
        TrainingOpRunner.AttentionCase(b: 2, h: 2, kvHeads: 1, d: 4, t: 9, tk: 9, window: 40),  // wider than Tk
        // Packed rows: block-diagonal causal attention from segment starts.
        TrainingOpRunner.AttentionCase(b: 2, h: 4, kvHeads: 2, d: 5, t: 19, tk: 19, segments: [[5, 9, 5], [1, 17, 1]]),
        TrainingOpRunner.AttentionCase(b: 1, h: 2, kvHeads: 1, d: 17, t: 40, tk: 40, segments: [[33, 7]]),  // whole vectors
        TrainingOpRunner.AttentionCase(b: 2, h: 4, kvHeads: 2, d: 5, t: 37, tk: 37, window: 8, segments: [[20, 17], [3, 3, 31]]),
        TrainingOpRunner.AttentionCase(b: 2, h: 6, kvHeads: 2, d: 4, t: 13, tk: 21, segments: [[6, 7], [13]]),  // and a cache
    ]

    @Test("grouped-query attention (forward and backward, KV cache, sliding window, packed rows) matches a naive Double reference",
          arguments: attentionCases)
    func groupedQueryAttention(_ c: TrainingOpRunner.AttentionCase) throws {
        let got = try run.attention(c)
        let ref = ReferenceAttention(c)
        #expect(firstMismatch(got.p, ref.p, atol: 1e-6) == nil)
        #expect(firstMismatch(got.context, ref.context) == nil)
        #expect(firstMismatch(got.dq, ref.dq) == nil)
        #expect(firstMismatch(got.dk, ref.dk) == nil)
        #expect(firstMismatch(got.dv, ref.dv) == nil)
    }

    @Test("the attention reference's gradients match finite differences (GQA with a window and cached keys)")
    func attentionReferenceGradient() {
        let c = TrainingOpRunner.AttentionCase(b: 1, h: 4, kvHeads: 2, d: 3, t: 4, tk: 6, window: 3)
        let ref = ReferenceAttention(c)
        let dctx = c.dContext.map(Double.init)
        func loss(_ q: [Double], _ k: [Double], _ v: [Double]) -> Double {
            zip(ReferenceAttention(c, q: q, k: k, v: v).context, dctx).reduce(0) { $0 + $1.0 * $1.1 }
        }
        let (q, k, v) = (c.q.map(Double.init), c.k.map(Double.init), c.v.map(Double.init))
        for i in q.indices { #expect(abs(centralDifference(q, i) { loss($0, k, v) } - ref.dq[i]) < 1e-6, "dq[\(i)]") }
        for i in k.indices { #expect(abs(centralDifference(k, i) { loss(q, $0, v) } - ref.dk[i]) < 1e-6, "dk[\(i)]") }
        for i in v.indices { #expect(abs(centralDifference(v, i) { loss(q, k, $0) } - ref.dv[i]) < 1e-6, "dv[\(i)]") }
    }

    @Test("a window as wide as the keys changes nothing; the windowed softmax op matches the reference rows")
    func windowEdges() throws {
        let plain = try run.attention(.init(b: 2, h: 4, kvHeads: 2, d: 5, t: 11, tk: 15))
        let wide = try run.attention(.init(b: 2, h: 4, kvHeads: 2, d: 5, t: 11, tk: 15, window: 15))
        #expect(plain.p == wide.p && plain.context == wide.context && plain.dk == wide.dk)
        // The softmax op alone, [2, Tq 5, Tk 40] with window 3, in place; masked dy entries hold NaN and are not read.
        let cpu = CPUBackend.shared
        let (tq, tk, window) = (5, 40, 3)
        let x = randomValues(2 * tq * tk, seed: 60).map { 4 * $0 }
        let t = try cpu.upload(x, shape: [2, tq, tk])
        try cpu.softmax(Softmax(x: t, y: t, scale: 0.7, causal: true, window: window))
        let y = try t.toArray()
        var dyValues = randomValues(x.count, seed: 61)
        var (expected, expectedDx) = ([Double](repeating: 0, count: x.count), [Double](repeating: 0, count: x.count))
        for r in 0..<2 * tq {
            let last = r % tq + tk - tq, keys = max(0, last - window + 1)...last
            let e = keys.map { Foundation.exp(0.7 * Double(x[r * tk + $0])) }, total = e.reduce(0, +)
            for (n, j) in keys.enumerated() { expected[r * tk + j] = e[n] / total }
            for j in 0..<tk where !keys.contains(j) { dyValues[r * tk + j] = .nan }
            let dot = keys.reduce(0.0) { $0 + Double(dyValues[r * tk + $1]) * Double(y[r * tk + $1]) }
            for j in keys { expectedDx[r * tk + j] = 0.7 * Double(y[r * tk + j]) * (Double(dyValues[r * tk + j]) - dot) }
        }
        #expect(firstMismatch(y, expected, atol: 1e-6) == nil)
        let dy = try cpu.upload(dyValues, shape: [2, tq, tk])
        try cpu.softmaxBackward(SoftmaxBackward(y: t, dy: dy, dx: dy, scale: 0.7, causal: true, window: window))
        #expect(firstMismatch(try dy.toArray(), expectedDx, atol: 1e-6) == nil)
    }

    @Test("the Llama ops give the same bits on 1, 2 and 3 threads")
    func threadCountInvariance() throws {
        let runners = [1, 2, 3].map { TrainingOpRunner(CPUBackend(pool: ThreadPool(threadCount: $0))) }
        let gates = randomValues(300_001, seed: 62).map { 6 * $0 }
        let rope = TrainingOpRunner.RoPECase(b: 4, t: 100, heads: 4, d: 64, start: 5, positions: 128)
        let cases = [TrainingOpRunner.AttentionCase(b: 2, h: 6, kvHeads: 2, d: 5, t: 37, tk: 40),
                     TrainingOpRunner.AttentionCase(b: 1, h: 4, kvHeads: 1, d: 8, t: 33, tk: 33, window: 7)]
        for r in runners.dropFirst() {
            for c in cases {
                let (x, y) = (try r.attention(c), try runners[0].attention(c))
                #expect(x.p == y.p && x.context == y.context && x.dq == y.dq && x.dk == y.dk && x.dv == y.dv, "\(c)")
            }
            #expect(try r.rmsNorm(rows: 300, cols: 257) == runners[0].rmsNorm(rows: 300, cols: 257))
            #expect(try r.rmsNormBackward(rows: 300, cols: 257) == runners[0].rmsNormBackward(rows: 300, cols: 257))
            let (s, s0) = (try r.swiglu(gates), try runners[0].swiglu(gates))
            #expect(s.y == s0.y && s.dGate == s0.dGate && s.dUp == s0.dUp)
            #expect(try r.rope(rope) == runners[0].rope(rope))
        }
    }

    @Test("the Llama ops and grouped-query attention reject bad shapes and arguments with a message")
    func validation() throws {
        let cpu = CPUBackend.shared
        let x = try cpu.zeros([4, 8]), v8 = try cpu.zeros([8]), v4 = try cpu.zeros([4]), v3 = try cpu.zeros([3])
        #expect(throws: LoRAError.self) { try RMSNorm(x: x, gamma: v4, y: x, epsilon: 1e-6) }
        #expect(throws: LoRAError.self) { try RMSNorm(x: x, gamma: v8, y: x, rstd: v3, epsilon: 1e-6) }
        #expect(throws: LoRAError.self) { try RMSNorm(x: x, gamma: v8, y: x, epsilon: 0) }
        #expect(throws: LoRAError.self) { try RMSNorm(x: x, gamma: v8, y: cpu.zeros([8, 4]), epsilon: 1e-6) }
        let row = try cpu.zeros([1, 8])
        #expect(throws: LoRAError.self) { try RMSNorm(x: cpu.zeros([1, 8]), gamma: row.reshaped([8]), y: row, epsilon: 1e-6) }
        _ = try RMSNorm(x: x, gamma: v8, y: x, rstd: v4, epsilon: 1e-6)  // in place is fine
        let dy = try cpu.zeros([4, 8])
        #expect(throws: LoRAError.self) { try RMSNormBackward(x: x, gamma: v8, rstd: v3, dy: dy, dx: dy) }
        #expect(throws: LoRAError.self) { try RMSNormBackward(x: x, gamma: v8, rstd: v4, dy: dy, dx: dy, accumulate: true) }
        #expect(throws: LoRAError.self) { try RMSNormBackward(x: x, gamma: v8, rstd: v4, dy: dy, dx: x) }
        #expect(throws: LoRAError.self) { try RMSNormBackward(x: x, gamma: v8, rstd: v4, dy: dy, dx: dy, dgamma: v8) }
        #expect(throws: LoRAError.self) { try RMSNormBackward(x: x, gamma: v8, rstd: v4, dy: dy, dx: dy, dgamma: v4) }
        _ = try RMSNormBackward(x: x, gamma: v8, rstd: v4, dy: dy, dx: dy, dgamma: cpu.zeros([8]))

        #expect(throws: LoRAError.self) { try SwiGLU(gate: x, up: v8, y: x) }
        #expect(throws: LoRAError.self) { try SwiGLUBackward(gate: x, up: dy, dy: dy, dGate: x, dUp: x) }
        #expect(throws: LoRAError.self) { try SwiGLUBackward(gate: x, up: dy, dy: v8, dGate: x, dUp: dy) }
        _ = try SwiGLUBackward(gate: x, up: dy, dy: cpu.zeros([32]), dGate: x, dUp: dy)

        // RoPE: x [B·T = 4, 2 heads · 4], tables [6, 2].
        let table = try cpu.zeros([6, 2])
        func rope(heads: Int = 2, headDim: Int = 4, t: Int = 2, start: Int = 0, cos: Tensor? = nil, sin: Tensor? = nil,
                  output: Tensor? = nil) throws -> RoPE {
            try RoPE(input: x, output: output ?? x, heads: heads, headDim: headDim, sequenceLength: t, start: start,
                     cos: cos ?? table, sin: sin ?? table)
        }
        _ = try rope(start: 4)
        let short = #expect(throws: LoRAError.self) { try rope(start: 5) }  // positions 5..<7 of 6
        #expect(short?.description.contains("at least 7 rows") == true)
        let odd = #expect(throws: LoRAError.self) { try rope(headDim: 3) }
        #expect(odd?.description.contains("headDim 3") == true)
        #expect(throws: LoRAError.self) { try rope(t: 3) }  // 4 rows are not sequences of 3
        #expect(throws: LoRAError.self) { try rope(heads: 3) }  // 32 is not rows of 12
        #expect(throws: LoRAError.self) { try rope(cos: cpu.zeros([6, 3])) }  // tables of the wrong width
        #expect(throws: LoRAError.self) { try rope(output: cpu.zeros([32])) }
        let bigTable = try cpu.zeros([16, 2])
        let overlap = #expect(throws: LoRAError.self) { try rope(cos: bigTable, sin: cpu.zeros([16, 2]), output: bigTable.reshaped([4, 8])) }
        #expect(overlap?.description.contains("shares memory with input cos") == true)
        #expect(throws: LoRAError.self) { try rope(start: -1) }

        // Attention: kv heads must divide heads, windows be ≥ 1, and kv operands hold Hkv heads.
        let bad = #expect(throws: LoRAError.self) {
            try AttentionShape(sequences: 1, heads: 6, kvHeads: 4, headDim: 4, queries: 5, keys: 5, scale: 1)
        }
        #expect(bad?.description.contains("do not divide") == true)
        #expect(throws: LoRAError.self) { try AttentionShape(sequences: 1, heads: 4, kvHeads: 0, headDim: 4, queries: 5, keys: 5, scale: 1) }
        #expect(throws: LoRAError.self) { try AttentionShape(sequences: 1, heads: 4, headDim: 4, queries: 5, keys: 5, scale: 1, window: 0) }
        let shape = try AttentionShape(sequences: 2, heads: 4, kvHeads: 2, headDim: 4, queries: 5, keys: 5, scale: 0.5, window: 3)
        #expect(shape.groupSize == 2 && shape.kvHead(3) == 1 && shape.visibleKeys(query: 4) == 2..<5)
        // Attention's visible keys are softmax's causal rule over its [T, Tk] rows, window and cache included.
        for (t, tk, window) in [(5, 5, nil), (5, 5, 3), (3, 8, nil), (3, 8, 2), (1, 9, 4), (4, 6, 10)] as [(Int, Int, Int?)] {
            let s = try AttentionShape(sequences: 1, heads: 1, headDim: 1, queries: t, keys: tk, scale: 1, window: window)
            let rows = try cpu.zeros([2, t, tk])
            let softmax = try Softmax(x: rows, y: rows, causal: true, window: window)
            for i in 0..<t {
                #expect(s.visibleKeys(query: i) == softmax.visibleKeys(row: i + t), "T \(t) Tk \(tk) W \(window ?? 0) row \(i)")
                #expect(s.visibleKeys(query: i).upperBound == s.cached + i + 1 && s.visibleCount(query: i) == s.cached + i + 1)
            }
        }
        let (q, kv, p) = (try cpu.zeros([10, 16]), try cpu.zeros([10, 8]), try cpu.zeros([2, 4, 5, 5]))
        func heads(_ t: Tensor, _ width: Int) -> HeadOperand { HeadOperand(t, ld: width, sequenceStride: 5 * width, headStride: 4) }
        _ = try Attention(shape, query: heads(q, 16), key: heads(kv, 8), value: heads(kv, 8), probabilities: p,
                          context: heads(cpu.zeros([10, 16]), 16))
        #expect(throws: LoRAError.self) {  // keys laid out for 4 heads do not fit a [10, 8] tensor
            try Attention(shape, query: heads(q, 16), key: heads(kv, 16), value: heads(kv, 8), probabilities: p,
                          context: heads(cpu.zeros([10, 16]), 16))
        }
        let (dk, dv) = (try cpu.zeros([10, 8]), try cpu.zeros([10, 8]))
        _ = try AttentionBackward(shape, query: heads(q, 16), key: heads(kv, 8), value: heads(kv, 8), probabilities: p,
                                  dContext: heads(q, 16), dQuery: heads(cpu.zeros([10, 16]), 16), dKey: heads(dk, 8),
                                  dValue: heads(dv, 8))
        #expect(throws: LoRAError.self) {  // dKey's two heads overlap
            try AttentionBackward(shape, query: heads(q, 16), key: heads(kv, 8), value: heads(kv, 8), probabilities: p,
                                  dContext: heads(q, 16), dQuery: heads(cpu.zeros([10, 16]), 16),
                                  dKey: HeadOperand(dk, ld: 8, sequenceStride: 40, headStride: 2), dValue: heads(dv, 8))
        }
        #expect(throws: LoRAError.self) { try Softmax(x: p, y: p, window: 2) }  // a window needs the causal mask
        #expect(throws: LoRAError.self) { try SoftmaxBackward(y: p, dy: p, dx: p, causal: true, window: 0) }
    }
}

/// (f(x + h·eᵢ) − f(x − h·eᵢ)) / 2h in Double, h = 1e-5.
func centralDifference(_ values: [Double], _ i: Int, _ f: ([Double]) -> Double) -> Double {
    var (plus, minus) = (values, values)
    plus[i] += 1e-5
    minus[i] -= 1e-5
    return (f(plus) - f(minus)) / 2e-5
}

/// RMS norm in Double (epsilon 1e-6), with its analytic gradient.
struct ReferenceRMSNorm {
    let x: [Double], gamma: [Double], cols: Int
    let y: [Double], rstd: [Double]

    init(x: [Float], gamma: [Float], cols: Int) { self.init(x: x.map(Double.init), gamma: gamma.map(Double.init), cols: cols) }

    init(x: [Double], gamma: [Double], cols: Int) {
        (self.x, self.gamma, self.cols) = (x, gamma, cols)
        var (y, rstd) = ([Double](repeating: 0, count: x.count), [Double]())
        for r in 0..<x.count / cols {
            let row = x[r * cols..<(r + 1) * cols]
            let s = 1 / (row.reduce(0) { $0 + $1 * $1 } / Double(cols) + 1e-6).squareRoot()
            for j in 0..<cols { y[r * cols + j] = x[r * cols + j] * s * gamma[j] }
            rstd.append(s)
        }
        (self.y, self.rstd) = (y, rstd)
    }

    /// (dx, dgamma) for upstream gradient dy.
    func backward(_ dy: [Float]) -> (dx: [Double], dgamma: [Double]) {
        var (dx, dgamma) = ([Double](repeating: 0, count: x.count), [Double](repeating: 0, count: cols))
        for r in 0..<x.count / cols {
            let xhat = (0..<cols).map { x[r * cols + $0] * rstd[r] }
            let g = (0..<cols).map { Double(dy[r * cols + $0]) * gamma[$0] }
            let meanGX = zip(g, xhat).reduce(0) { $0 + $1.0 * $1.1 } / Double(cols)
            for j in 0..<cols {
                dx[r * cols + j] = rstd[r] * (g[j] - xhat[j] * meanGX)
                dgamma[j] += Double(dy[r * cols + j]) * xhat[j]
            }
        }
        return (dx, dgamma)
    }
}

/// silu(g)·u and its gradients for upstream dy, in Double.
func referenceSwiGLU(_ g: Double, _ u: Double, dy: Double) -> (y: Double, dGate: Double, dUp: Double) {
    let s = 1 / (1 + exp(-g))
    return (g * s * u, dy * u * s * (1 + g * (1 - s)), dy * g * s)
}

/// Grouped-query causal attention with an optional window, forward and backward, by the definition in Double.
struct ReferenceAttention {
    var p: [Double], context: [Double], dq: [Double], dk: [Double], dv: [Double]

    init(_ c: TrainingOpRunner.AttentionCase) {
        self.init(c, q: c.q.map(Double.init), k: c.k.map(Double.init), v: c.v.map(Double.init))
    }

    init(_ c: TrainingOpRunner.AttentionCase, q: [Double], k: [Double], v: [Double]) {
        let dctx = c.dContext.map(Double.init)
        let (w, wkv, group) = (c.h * c.d, c.kvHeads * c.d, c.h / c.kvHeads)
        (p, context) = ([Double](repeating: 0, count: c.b * c.h * c.t * c.tk), [Double](repeating: 0, count: c.b * c.t * w))
        (dq, dk, dv) = ([Double](repeating: 0, count: q.count), [Double](repeating: 0, count: k.count),
                        [Double](repeating: 0, count: k.count))
        for b in 0..<c.b { for h in 0..<c.h {
            let kvh = h / group
            func qa(_ i: Int, _ e: Int) -> Int { (b * c.t + i) * w + h * c.d + e }  // q, context, dContext
            func ka(_ j: Int, _ e: Int) -> Int { (b * c.tk + j) * wkv + kvh * c.d + e }  // k, v and their gradients
            func pa(_ i: Int, _ j: Int) -> Int { ((b * c.h + h) * c.t + i) * c.tk + j }
            for i in 0..<c.t {
                let position = c.tk - c.t + i  // absolute: after the cached keys
                let first = c.segmentStarts?[b * c.t + i] ?? 0
                let keys = (0...position).filter { j in j >= first && c.window.map { j > position - $0 } ?? true }
                let s = keys.map { j in Double(c.scale) * (0..<c.d).reduce(0) { $0 + q[qa(i, $1)] * k[ka(j, $1)] } }
                let e = s.map { Foundation.exp($0 - s.max()!) }, total = e.reduce(0, +)
                for (n, j) in keys.enumerated() { p[pa(i, j)] = e[n] / total }
                for e in 0..<c.d { context[qa(i, e)] = keys.reduce(0) { $0 + p[pa(i, $1)] * v[ka($1, e)] } }
                let dp = keys.map { j in (0..<c.d).reduce(0) { $0 + dctx[qa(i, $1)] * v[ka(j, $1)] } }
                let dot = zip(keys, dp).reduce(0) { $0 + $1.1 * p[pa(i, $1.0)] }
                for (n, j) in keys.enumerated() {
                    let ds = Double(c.scale) * p[pa(i, j)] * (dp[n] - dot)
                    for e in 0..<c.d {
                        dq[qa(i, e)] += ds * k[ka(j, e)]
                        dk[ka(j, e)] += ds * q[qa(i, e)]
                        dv[ka(j, e)] += p[pa(i, j)] * dctx[qa(i, e)]
                    }
                }
            }
        } }
    }
}
