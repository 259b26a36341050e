// The CPU training ops (attention, layer norm, GELU, cross-entropy, AdamW, reductions) against Double references, the
// gradients also against finite differences, and every op the same bits on 1, 2 and 3 threads.
import Foundation
import LoRARuntime
import LoRATestSupport
import Testing

@Suite("CPU training ops")
struct CPUTrainingOpsTests {
    let run = TrainingOpRunner(CPUBackend.shared)

    @Test("layer norm matches the reference, statistics included",
          arguments: [(1, 1), (3, 7), (5, 33), (2, 768), (70, 129)])
    func layerNorm(rows: Int, cols: Int) throws {
        let (x, gamma, beta) = TrainingOpRunner.layerNormInputs(rows: rows, cols: cols)
        let ref = ReferenceLayerNorm(x: x, gamma: gamma, beta: beta, cols: cols)
        let got = try run.layerNorm(rows: rows, cols: cols)
        #expect(firstMismatch(got.y, ref.y, atol: 2e-5, rtol: 1e-5) == nil)
        #expect(firstMismatch(got.mean, ref.mean, atol: 1e-6, rtol: 1e-6) == nil)
        #expect(firstMismatch(got.rstd, ref.rstd, atol: 1e-6, rtol: 1e-5) == nil)
    }

    @Test("layer norm backward matches the reference: written, accumulated, in place",
          arguments: [(1, 1), (3, 7), (33, 50), (70, 129)])
    func layerNormBackward(rows: Int, cols: Int) throws {
        let (x, gamma, beta) = TrainingOpRunner.layerNormInputs(rows: rows, cols: cols)
        let ref = ReferenceLayerNorm(x: x, gamma: gamma, beta: beta, cols: cols)
        let dy = randomValues(rows * cols, seed: 24)
        let (dx, dgamma, dbeta) = ref.backward(dy)
        let written = try run.layerNormBackward(rows: rows, cols: cols)
        #expect(firstMismatch(written.dx, dx, atol: 1e-4, rtol: 1e-4) == nil)
        #expect(firstMismatch(written.dgamma, dgamma.map { $0 + 0.5 }, atol: 1e-4, rtol: 1e-4) == nil)
        #expect(firstMismatch(written.dbeta, dbeta.map { $0 + 0.5 }, atol: 1e-4, rtol: 1e-4) == nil)
        let start = randomValues(rows * cols, seed: 25).map(Double.init)
        let added = try run.layerNormBackward(rows: rows, cols: cols, accumulate: true)
        #expect(firstMismatch(added.dx, zip(dx, start).map(+), atol: 1e-4, rtol: 1e-4) == nil)
        #expect(try run.layerNormBackward(rows: rows, cols: cols, inPlace: true) == written)
    }

    @Test("the layer norm reference's gradient matches finite differences")
    func layerNormReferenceGradient() {
        let (rows, cols) = (2, 5)
        let (x, gamma, beta) = TrainingOpRunner.layerNormInputs(rows: rows, cols: cols)
        let dy = randomValues(rows * cols, seed: 24).map(Double.init)
        func loss(_ x: [Float], _ gamma: [Float], _ beta: [Float]) -> Double {
            zip(ReferenceLayerNorm(x: x, gamma: gamma, beta: beta, cols: cols).y, dy).reduce(0) { $0 + $1.0 * $1.1 }
        }
        let (dx, dgamma, dbeta) = ReferenceLayerNorm(x: x, gamma: gamma, beta: beta, cols: cols).backward(dy.map(Float.init))
        func numeric(_ values: [Float], _ i: Int, _ f: ([Float]) -> Double) -> Double {
            var (plus, minus) = (values, values)
            plus[i] += 1e-2
            minus[i] -= 1e-2
            return (f(plus) - f(minus)) / 2e-2
        }
        for i in x.indices {
            #expect(abs(numeric(x, i) { loss($0, gamma, beta) } - dx[i]) < 1e-3, "dx[\(i)]")
        }
        for j in 0..<cols {
            #expect(abs(numeric(gamma, j) { loss(x, $0, beta) } - dgamma[j]) < 1e-3, "dgamma[\(j)]")
            #expect(abs(numeric(beta, j) { loss(x, gamma, $0) } - dbeta[j]) < 1e-3, "dbeta[\(j)]")
        }
    }

    @Test("GELU (gelu_new) and its gradient match the tanh formula in Double, extremes included")
    func gelu() throws {
        let values = randomValues(1000, seed: 30).map { 8 * $0 } + [0, -0.0, 1e-8, -1e-8, 30, -30, 100, -100, 1e30, -1e30]
        let got = try run.gelu(values)
        let dy = randomValues(values.count, seed: 26)
        let c = Double(GELUConstants.sqrtTwoOverPi), k = Double(GELUConstants.cubic)
        let y = values.map { v -> Double in let x = Double(v); return 0.5 * x * (1 + tanh(c * (x + k * x * x * x))) }
        let dx = zip(values, dy).map { v, d -> Double in
            let x = Double(v), t = tanh(c * (x + k * x * x * x))
            return Double(d) * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 3 * k * x * x))
        }
        #expect(firstMismatch(got.y, y, atol: 1e-6, rtol: 1e-5) == nil)
        #expect(firstMismatch(got.dx, dx, atol: 1e-6, rtol: 1e-5) == nil)
    }

    @Test("cross-entropy matches the reference: loss, gradient, ignored and invalid targets, in place",
          arguments: [(1, 1), (4, 10), (7, 257), (3, 5000)])
    func crossEntropy(rows: Int, classes: Int) throws {
        var targets = (0..<rows).map { Int32(($0 * 7919) % classes) }
        if rows > 2 { targets[1] = -100 }  // ignored
        let logits = TrainingOpRunner.logits(rows: rows, classes: classes)
        let ref = referenceCrossEntropy(logits, targets: targets, classes: classes, scale: 0.25)
        let got = try run.crossEntropy(rows: rows, classes: classes, targets: targets)
        #expect(firstMismatch(got.losses, ref.losses, atol: 1e-5, rtol: 1e-5) == nil)
        #expect(firstMismatch(got.dlogits, ref.dlogits, atol: 1e-7, rtol: 1e-5) == nil)
        #expect(try run.crossEntropy(rows: rows, classes: classes, targets: targets, gradient: false).losses == got.losses)
        #expect(try run.crossEntropy(rows: rows, classes: classes, targets: targets, inPlace: true) == got)
        // A target that names no class gives NaN, which a NaN guard reports.
        for bad in [Int32(classes), Int32(classes) + 1000, .max] {
            let invalid = try run.crossEntropy(rows: 1, classes: classes, targets: [bad])
            #expect(invalid.losses[0].isNaN && invalid.dlogits.allSatisfy(\.isNaN), "target \(bad)")
        }
    }

    @Test("AdamW follows torch.optim.AdamW's formula over several steps",
          arguments: [(1, 0.9, Float(1)), (37, 0.9, 1), (1000, 0.3, 0.5)])
    func adamW(count: Int, beta1: Float, gradientScale: Float) throws {
        var settings = TrainingOpRunner.AdamWSettings()
        (settings.beta1, settings.gradientScale) = (beta1, gradientScale)
        let got = try run.adamW(count: count, steps: 4, settings: settings)
        var p = randomValues(count, seed: 28).map(Double.init)
        var (m, v) = ([Double](repeating: 0, count: count), [Double](repeating: 0, count: count))
        let (lr, b1, b2) = (Double(settings.learningRate), Double(beta1), Double(settings.beta2))
        for step in 1...4 {
            let g = randomValues(count, seed: 29 + UInt64(step)).map { Double($0) * Double(gradientScale) }
            for i in 0..<count {
                p[i] *= 1 - lr * Double(settings.weightDecay)
                m[i] = b1 * m[i] + (1 - b1) * g[i]
                v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i]
                let mHat = m[i] / (1 - pow(b1, Double(step))), vHat = v[i] / (1 - pow(b2, Double(step)))
                p[i] -= lr * mHat / (vHat.squareRoot() + Double(settings.epsilon))
            }
        }
        #expect(firstMismatch(got.p, p, atol: 1e-6, rtol: 1e-5) == nil)
        #expect(firstMismatch(got.m, m, atol: 1e-7, rtol: 1e-5) == nil)
        #expect(firstMismatch(got.v, v, atol: 1e-9, rtol: 1e-5) == nil)
    }

    @Test("sum and sum of squares match Double, set and accumulated", arguments: [1, 15, 64, 16_385, 100_003])
    func reduction(count: Int) throws {
        let values = randomValues(count, seed: 31)
        let sum = values.reduce(0.0) { $0 + Double($1) }, squares = values.reduce(0.0) { $0 + Double($1) * Double($1) }
        #expect(firstMismatch([try run.reduce(values, .sum)], [sum], atol: 1e-4, rtol: 1e-5) == nil)
        #expect(firstMismatch([try run.reduce(values, .sumOfSquares)], [squares], atol: 1e-4, rtol: 1e-5) == nil)
        #expect(firstMismatch([try run.reduce(values, .sumOfSquares, accumulate: true)], [squares + 0.5], atol: 1e-4, rtol: 1e-5) == nil)
    }

    @Test("embedding lookup adds token and position rows; a bad id gives a NaN row")
    func embedding() throws {
        let (vocab, width) = (11, 37)
        let tokens: [Int32] = [0, 10, 3, 3, -1, 11, .min, .max]
        let got = try run.embedding(tokens: tokens, vocab: vocab, width: width)
        let (table, positions) = (randomValues(vocab * width, seed: 33), randomValues(tokens.count * width, seed: 34))
        for (n, id) in tokens.enumerated() {
            let row = Array(got[n * width..<(n + 1) * width])
            if n < 4 {
                #expect(row == (0..<width).map { table[Int(id) * width + $0] + positions[n * width + $0] }, "row \(n)")
            } else {
                #expect(row.allSatisfy { $0.isNaN }, "id \(id)")
            }
        }
    }

    @Test("embedding backward adds each row's gradient into its id's row; repeated ids add up; bad ids add nothing")
    func embeddingBackward() throws {
        let (vocab, width) = (11, 70)
        let tokens: [Int32] = [0, 10, 3, 3, -1, 11, .min, .max, 3]
        let got = try run.embeddingBackward(tokens: tokens, vocab: vocab, width: width)
        let upstream = randomValues(tokens.count * width, seed: 37)
        var expected = [Double](repeating: 0.25, count: vocab * width)
        for (n, id) in tokens.enumerated() where id >= 0 && Int(id) < vocab {
            for j in 0..<width { expected[Int(id) * width + j] += Double(upstream[n * width + j]) }
        }
        #expect(firstMismatch(got, expected, atol: 1e-6, rtol: 1e-6) == nil)
    }

    @Test("block copy moves strided blocks and nothing else; overruns are refused")
    func blockCopy() throws {
        let got = try run.blockCopy()
        let source = randomValues(120, seed: 38)
        var expected = [Float](repeating: 0.5, count: 189)
        for b in 0..<3 { for i in 0..<4 { for j in 0..<5 { expected[1 + b * 63 + i * 9 + j] = source[2 + b * 5 + i * 20 + j] } } }
        #expect(got == expected)
        let cpu = CPUBackend.shared
        #expect(throws: LoRAError.self) {
            try BlockCopy(rows: 4, cols: 5, batch: 4, from: GEMMOperand(cpu.zeros([6, 20]), ld: 20, batchStride: 5),
                          to: GEMMOperand(cpu.zeros([21, 9]), ld: 9, batchStride: 63))
        }
    }

    @Test("attention (forward and backward, with cached keys) matches the reference",
          arguments: [TrainingOpRunner.AttentionCase(b: 2, h: 3, d: 5, t: 37, tk: 37),
                      TrainingOpRunner.AttentionCase(b: 3, h: 2, d: 4, t: 19, tk: 26)])
    func attention(_ c: TrainingOpRunner.AttentionCase) throws {
        let got = try run.attention(c)
        let (q, k, v, dctx) = (c.q.map(Double.init), c.k.map(Double.init), c.v.map(Double.init), c.dContext.map(Double.init))
        let w = c.h * c.d
        var (p, ctx) = ([Double](repeating: 0, count: c.b * c.h * c.t * c.tk), [Double](repeating: 0, count: c.b * c.t * w))
        var (dq, dk, dv) = ([Double](repeating: 0, count: c.b * c.t * w), [Double](repeating: 0, count: c.b * c.tk * w),
                            [Double](repeating: 0, count: c.b * c.tk * w))
        for b in 0..<c.b { for h in 0..<c.h {
            func qa(_ i: Int, _ e: Int) -> Int { (b * c.t + i) * w + h * c.d + e }  // q, context, dContext
            func ka(_ j: Int, _ e: Int) -> Int { (b * c.tk + j) * w + h * c.d + e }  // k, v and their gradients
            func pa(_ i: Int, _ j: Int) -> Int { ((b * c.h + h) * c.t + i) * c.tk + j }
            for i in 0..<c.t {
                let visible = i + c.tk - c.t + 1
                let s = (0..<visible).map { j in Double(c.scale) * (0..<c.d).reduce(0) { $0 + q[qa(i, $1)] * k[ka(j, $1)] } }
                let e = s.map { Foundation.exp($0 - s.max()!) }, total = e.reduce(0, +)
                for j in 0..<visible { p[pa(i, j)] = e[j] / total }
                for e in 0..<c.d { ctx[qa(i, e)] = (0..<visible).reduce(0) { $0 + p[pa(i, $1)] * v[ka($1, e)] } }
                let dp = (0..<visible).map { j in (0..<c.d).reduce(0) { $0 + dctx[qa(i, $1)] * v[ka(j, $1)] } }
                let dot = (0..<visible).reduce(0) { $0 + dp[$1] * p[pa(i, $1)] }
                for j in 0..<visible {
                    let ds = Double(c.scale) * p[pa(i, j)] * (dp[j] - dot)
                    for e in 0..<c.d {
                        dq[qa(i, e)] += ds * k[ka(j, e)]
                        dk[ka(j, e)] += ds * q[qa(i, e)]
                        dv[ka(j, e)] += p[pa(i, j)] * dctx[qa(i, e)]
                    }
                }
            }
        } }
        #expect(firstMismatch(got.p, p, atol: 1e-6) == nil)
        #expect(firstMismatch(got.context, ctx) == nil)
        #expect(firstMismatch(got.dq, dq) == nil)
        #expect(firstMismatch(got.dk, dk) == nil)
        #expect(firstMismatch(got.dv, dv) == nil)
    }

    @Test("attention-shaped batched GEMMs (heads side by side in C) match the reference")
    func headsGEMM() throws {
        let (t, heads, d) = (7, 3, 5)
        let width = heads * d
        let qkv = randomValues(t * 3 * width, seed: 35).map(Double.init)
        let got = try run.headsGEMM(tokens: t, heads: heads, dim: d)
        var (scores, out) = ([Double](repeating: 0, count: heads * t * t), [Double](repeating: 0, count: t * width))
        for h in 0..<heads {
            for i in 0..<t { for j in 0..<t {
                scores[(h * t + i) * t + j] = (0..<d).reduce(0) { $0 + qkv[i * 3 * width + h * d + $1] * qkv[j * 3 * width + width + h * d + $1] }
            } }
            for i in 0..<t { for c in 0..<d {
                out[i * width + h * d + c] = (0..<t).reduce(0) { $0 + Double(got.scores[(h * t + i) * t + $1]) * qkv[$1 * 3 * width + 2 * width + h * d + c] }
            } }
        }
        #expect(firstMismatch(got.scores, scores) == nil)
        #expect(firstMismatch(got.out, out) == nil)
        // Side-by-side batches that would overlap are still refused.
        let cpu = CPUBackend.shared
        let c = try cpu.zeros([t, width])
        #expect(throws: LoRAError.self) {
            try GEMM(m: t, n: d + 1, k: d, batch: heads, a: GEMMOperand(cpu.zeros([t, d]), ld: d),
                     b: GEMMOperand(cpu.zeros([d, d + 1]), ld: d + 1), c: GEMMOperand(c, ld: width, batchStride: d))
        }
    }

    @Test("dropout keeps each element with probability 1 − p, scaled by 1/(1 − p), decided by (seed, index) only",
          arguments: [Float(0), 0.1, 0.5, 0.9])
    func dropout(probability: Float) throws {
        let count = 100_003
        let x = randomValues(count, seed: 36)
        let y = try run.dropout(count: count, probability: probability)
        let dropped = y.indices.filter { y[$0] == 0 && x[$0] != 0 }
        #expect(abs(Double(dropped.count) / Double(count) - Double(probability)) < 0.01)
        let op = try Dropout(x: CPUBackend.shared.zeros([1]), y: CPUBackend.shared.zeros([1]), probability: probability, seed: 9)
        for i in y.indices {
            let keep = Dropout.hash(UInt32(i), seed: 9) >= op.threshold
            guard y[i] == (keep ? x[i] * op.keepScale : 0) else { Issue.record("element \(i)"); break }
        }
        #expect(try run.dropout(count: 1000, probability: probability) == Array(y.prefix(1000)))
    }

    @Test("dropout with an index offset gives that part of a larger tensor's mask (a data-parallel rank's rows)")
    func dropoutOffset() throws {
        let whole = try run.dropoutMask(count: 50_000, probability: 0.3, offset: 0)
        for offset in [1, 17, 40_000] {
            #expect(try run.dropoutMask(count: 10_000 - offset % 10_000, probability: 0.3, offset: UInt32(offset))
                    == Array(whole[offset..<(offset + 10_000 - offset % 10_000)]), "offset \(offset)")
        }
        // Indices wrap modulo 2³², as the hash reads them.
        let wrapped = try run.dropoutMask(count: 100, probability: 0.3, offset: .max - 49)
        #expect(Array(wrapped[50...]) == Array(whole[0..<50]))
    }

    @Test("the dropout hash is lowbias32 of index·0x9E3779B1 + the seed's low word, xor its high word, on any lane count")
    func dropoutHash() throws {
        // An independent statement of the mask rule Kernels/elementwise.cl repeats.
        func lowbias32(_ i: UInt32, low: UInt32, high: UInt32) -> UInt32 {
            var h = (i &* 0x9E37_79B1 &+ low) ^ high
            h = (h ^ (h >> 16)) &* 0x7FEB_352D
            h = (h ^ (h >> 15)) &* 0x846C_A68B
            return h ^ (h >> 16)
        }
        for seed: UInt64 in [0, 9, 0x0123_4567_89AB_CDEF, .max] {
            let (low, high) = Dropout.seedWords(seed)
            #expect(UInt64(high) << 32 | UInt64(low) == seed)
            let lanes = SIMD16<UInt32>(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15) &+ 1_000_000
            let vector = Dropout.hash(lanes, seed: seed)
            for lane in 0..<16 {
                #expect(vector[lane] == lowbias32(lanes[lane], low: low, high: high))
                #expect(Dropout.hash(lanes[lane], seed: seed) == vector[lane])
            }
        }
        #expect(Dropout.drops(0, threshold: 1) && !Dropout.drops(1, threshold: 1))
    }

    @Test("training ops give the same bits on 1, 2 and 3 threads")
    func threadCountInvariance() throws {
        let runners = [1, 2, 3].map { TrainingOpRunner(CPUBackend(pool: ThreadPool(threadCount: $0))) }
        let targets = (0..<300).map { Int32($0 % 500) }
        let values = randomValues(300_001, seed: 32)
        let heads = TrainingOpRunner.AttentionCase(b: 2, h: 3, d: 5, t: 37, tk: 40)
        for r in runners.dropFirst() {
            let (x, y) = (try r.attention(heads), try runners[0].attention(heads))
            #expect(x.p == y.p && x.context == y.context && x.dq == y.dq && x.dk == y.dk && x.dv == y.dv)
            #expect(try r.layerNorm(rows: 300, cols: 257) == runners[0].layerNorm(rows: 300, cols: 257))
            #expect(try r.layerNormBackward(rows: 300, cols: 257) == runners[0].layerNormBackward(rows: 300, cols: 257))
            #expect(try r.gelu(values).y == runners[0].gelu(values).y)
            #expect(try r.dropout(count: 300_001, probability: 0.3) == runners[0].dropout(count: 300_001, probability: 0.3))
            #expect(try r.crossEntropy(rows: 300, classes: 500, targets: targets) == runners[0].crossEntropy(rows: 300, classes: 500, targets: targets))
            #expect(try r.adamW(count: 100_000, steps: 2) == runners[0].adamW(count: 100_000, steps: 2))
            #expect(try r.reduce(values, .sumOfSquares) == runners[0].reduce(values, .sumOfSquares))
        }
    }

    @Test("training ops reject bad shapes and arguments with a message")
    func validation() throws {
        let cpu = CPUBackend.shared
        let x = try cpu.zeros([4, 8]), v8 = try cpu.zeros([8]), v4 = try cpu.zeros([4]), v3 = try cpu.zeros([3])
        #expect(throws: LoRAError.self) { try LayerNorm(x: x, gamma: v4, beta: v8, y: x) }
        #expect(throws: LoRAError.self) { try LayerNorm(x: x, gamma: v8, beta: v8, y: x, mean: v4) }
        #expect(throws: LoRAError.self) { try LayerNorm(x: x, gamma: v8, beta: v8, y: x, epsilon: 0) }
        #expect(throws: LoRAError.self) { try LayerNormBackward(x: x, gamma: v8, mean: v3, rstd: v4, dy: x, dx: x) }
        #expect(throws: LoRAError.self) { try LayerNormBackward(x: x, gamma: v8, mean: v4, rstd: v4, dy: x, dx: x, accumulate: true) }
        #expect(throws: LoRAError.self) { try GELUBackward(x: x, dy: v8, dx: x) }
        let (ids3, ids4) = (try cpu.zeros([3], dtype: .int32), try cpu.zeros([4], dtype: .int32))
        #expect(throws: LoRAError.self) { try CrossEntropy(logits: x, targets: ids3, losses: v4) }
        #expect(throws: LoRAError.self) { try CrossEntropy(logits: x, targets: ids4, losses: v4, dlogits: v8) }
        // Float targets are refused, naming the operand.
        let floatTargets = #expect(throws: LoRAError.self) { try CrossEntropy(logits: x, targets: v4, losses: v4) }
        #expect(floatTargets == .unsupportedDType("crossEntropy: targets [4] is float32 (expected int32)"))
        let error = #expect(throws: LoRAError.self) {
            try AdamW(parameters: v8, gradients: v8, firstMoment: cpu.zeros([8]), secondMoment: cpu.zeros([8]), learningRate: 1, step: 1)
        }
        #expect(error?.description.contains("four different tensors") == true)
        #expect(throws: LoRAError.self) {
            try AdamW(parameters: v8, gradients: cpu.zeros([8]), firstMoment: cpu.zeros([8]), secondMoment: cpu.zeros([8]),
                      learningRate: 1, step: 0)
        }
        #expect(throws: LoRAError.self) { try Reduction(.sum, of: x, into: v4) }
        #expect(throws: LoRAError.self) { try Reduction(.sum, of: v8, into: v8.reshaped([1, 8])) }
    }
}

/// Layer norm in Double, with its analytic gradient.
struct ReferenceLayerNorm {
    let x: [Double], gamma: [Double], cols: Int
    let y: [Double], mean: [Double], rstd: [Double]

    init(x: [Float], gamma: [Float], beta: [Float], cols: Int) {
        (self.x, self.gamma, self.cols) = (x.map(Double.init), gamma.map(Double.init), cols)
        let rows = x.count / cols
        var (y, mean, rstd) = ([Double](repeating: 0, count: x.count), [Double](), [Double]())
        for r in 0..<rows {
            let row = self.x[r * cols..<(r + 1) * cols]
            let m = row.reduce(0, +) / Double(cols)
            let s = 1 / (row.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(cols) + 1e-5).squareRoot()
            for j in 0..<cols { y[r * cols + j] = (self.x[r * cols + j] - m) * s * self.gamma[j] + Double(beta[j]) }
            mean.append(m)
            rstd.append(s)
        }
        (self.y, self.mean, self.rstd) = (y, mean, rstd)
    }

    /// (dx, dgamma, dbeta) for upstream gradient dy.
    func backward(_ dy: [Float]) -> (dx: [Double], dgamma: [Double], dbeta: [Double]) {
        var dx = [Double](repeating: 0, count: x.count)
        var (dgamma, dbeta) = ([Double](repeating: 0, count: cols), [Double](repeating: 0, count: cols))
        for r in 0..<(x.count / cols) {
            let xhat = (0..<cols).map { (x[r * cols + $0] - mean[r]) * rstd[r] }
            let g = (0..<cols).map { Double(dy[r * cols + $0]) * gamma[$0] }
            let meanG = g.reduce(0, +) / Double(cols)
            let meanGX = zip(g, xhat).reduce(0) { $0 + $1.0 * $1.1 } / Double(cols)
            for j in 0..<cols {
                dx[r * cols + j] = rstd[r] * (g[j] - meanG - xhat[j] * meanGX)
                dgamma[j] += Double(dy[r * cols + j]) * xhat[j]
                dbeta[j] += Double(dy[r * cols + j])
            }
        }
        return (dx, dgamma, dbeta)
    }
}

/// Cross-entropy in Double: losses and scale·(softmax − onehot); ignored rows 0.
func referenceCrossEntropy(_ logits: [Float], targets: [Int32], classes: Int, scale: Double) -> (losses: [Double], dlogits: [Double]) {
    var losses = [Double](), dlogits = [Double](repeating: 0, count: logits.count)
    for (r, target) in targets.enumerated() {
        guard target >= 0 else { losses.append(0); continue }
        let row = logits[r * classes..<(r + 1) * classes].map(Double.init)
        let m = row.max()!
        let sum = row.reduce(0) { $0 + exp($1 - m) }
        losses.append(log(sum) + m - row[Int(target)])
        for j in 0..<classes {
            dlogits[r * classes + j] = scale * (exp(row[j] - m) / sum - (j == Int(target) ? 1 : 0))
        }
    }
    return (losses, dlogits)
}
