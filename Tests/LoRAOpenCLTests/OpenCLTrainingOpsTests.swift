// The OpenCL training-op kernels (normalization.cl, activation.cl, cross_entropy.cl, optimizer.cl,
// reduction.cl) against the CPU ops. Names start with "OpenCL" so CI counts them.
import LoRATestSupport
import SwiftLoRA
import Testing

@Suite("OpenCL training ops", .enabled(if: TestDevices.runOpenCL, "\(TestDevices.skipReason)"))
struct OpenCLTrainingOpsTests {
    var cl: TrainingOpRunner { get throws { TrainingOpRunner(try TestDevices.openCL.get()) } }
    let cpu = TrainingOpRunner(CPUBackend.shared)

    @Test("OpenCL layer norm (normalization.cl) matches the CPU", arguments: [(1, 1), (3, 7), (5, 300), (70, 768)])
    func layerNorm(rows: Int, cols: Int) throws {
        let (got, expected) = (try cl.layerNorm(rows: rows, cols: cols), try cpu.layerNorm(rows: rows, cols: cols))
        #expect(firstMismatch(got.y, expected.y, atol: 2e-5, rtol: 1e-5) == nil)
        #expect(firstMismatch(got.mean, expected.mean, atol: 1e-6, rtol: 1e-6) == nil)
        #expect(firstMismatch(got.rstd, expected.rstd, atol: 1e-6, rtol: 1e-5) == nil)
    }

    @Test("OpenCL layer norm backward matches the CPU: written, accumulated, in place",
          arguments: [(1, 1), (3, 7), (33, 50), (70, 129)])
    func layerNormBackward(rows: Int, cols: Int) throws {
        for (accumulate, inPlace) in [(false, false), (true, false), (false, true)] {
            let got = try cl.layerNormBackward(rows: rows, cols: cols, accumulate: accumulate, inPlace: inPlace)
            let expected = try cpu.layerNormBackward(rows: rows, cols: cols, accumulate: accumulate, inPlace: inPlace)
            #expect(firstMismatch(got.dx, expected.dx, atol: 1e-4, rtol: 1e-4) == nil, "accumulate \(accumulate) in place \(inPlace)")
            #expect(firstMismatch(got.dgamma, expected.dgamma, atol: 1e-4, rtol: 1e-4) == nil)
            #expect(firstMismatch(got.dbeta, expected.dbeta, atol: 1e-4, rtol: 1e-4) == nil)
        }
    }

    @Test("OpenCL GELU and its gradient (activation.cl) match the CPU, extremes included")
    func gelu() throws {
        let values = randomValues(5000, seed: 30).map { 8 * $0 } + [0, -0.0, 1e-8, 30, -30, 1e30, -1e30]
        let (got, expected) = (try cl.gelu(values), try cpu.gelu(values))
        #expect(firstMismatch(got.y, expected.y, atol: 1e-6, rtol: 1e-5) == nil)
        #expect(firstMismatch(got.dx, expected.dx, atol: 1e-6, rtol: 1e-5) == nil)
    }

    @Test("OpenCL cross-entropy (cross_entropy.cl) matches the CPU: ignored and invalid targets, in place",
          arguments: [(1, 1), (4, 10), (7, 257), (3, 5000)])
    func crossEntropy(rows: Int, classes: Int) throws {
        var targets = (0..<rows).map { Int32(($0 * 7919) % classes) }
        if rows > 2 { targets[1] = -100 }
        for (gradient, inPlace) in [(true, false), (false, false), (true, true)] {
            let got = try cl.crossEntropy(rows: rows, classes: classes, targets: targets, gradient: gradient, inPlace: inPlace)
            let expected = try cpu.crossEntropy(rows: rows, classes: classes, targets: targets, gradient: gradient, inPlace: inPlace)
            #expect(firstMismatch(got.losses, expected.losses, atol: 1e-5, rtol: 1e-5) == nil)
            #expect(firstMismatch(got.dlogits, expected.dlogits, atol: 1e-7, rtol: 1e-5) == nil)
        }
        for bad in [Int32(classes), Int32(classes) + 1000, .max] {
            let invalid = try cl.crossEntropy(rows: 1, classes: classes, targets: [bad])
            #expect(invalid.losses[0].isNaN && invalid.dlogits.allSatisfy(\.isNaN), "target \(bad)")
        }
    }

    @Test("OpenCL AdamW (optimizer.cl) matches the CPU over several steps", arguments: [1, 37, 10_000])
    func adamW(count: Int) throws {
        var settings = TrainingOpRunner.AdamWSettings()
        settings.gradientScale = 0.5
        let got = try cl.adamW(count: count, steps: 5, settings: settings)
        let expected = try cpu.adamW(count: count, steps: 5, settings: settings)
        #expect(firstMismatch(got.p, expected.p, atol: 1e-6, rtol: 1e-5) == nil)
        #expect(firstMismatch(got.m, expected.m, atol: 1e-7, rtol: 1e-5) == nil)
        #expect(firstMismatch(got.v, expected.v, atol: 1e-9, rtol: 1e-5) == nil)
    }

    @Test("OpenCL sum and sum of squares (reduction.cl) match the CPU", arguments: [1, 15, 300, 16_385, 1_000_003])
    func reduction(count: Int) throws {
        let values = randomValues(count, seed: 31)
        for kind in [Reduction.Kind.sum, .sumOfSquares] {
            for accumulate in [false, true] {
                let (got, expected) = (try cl.reduce(values, kind, accumulate: accumulate), try cpu.reduce(values, kind, accumulate: accumulate))
                #expect(abs(got - expected) <= 1e-4 + 1e-5 * abs(expected), "\(kind) accumulate \(accumulate): \(got) vs \(expected)")
            }
        }
    }

    @Test("OpenCL embedding lookup and backward (embedding.cl), block copy and attention-shaped GEMMs match the CPU")
    func embeddingAndHeads() throws {
        let tokens: [Int32] = [0, 10, 3, 3, -1, 11, .min, .max]
        for tableType in DType.floatingPoint {  // a bf16 or f16 table is widened as it is read, exactly
            let got = try cl.embedding(tokens: tokens, vocab: 11, width: 37, tableType: tableType)
            let expected = try cpu.embedding(tokens: tokens, vocab: 11, width: 37, tableType: tableType)
            #expect(zip(got, expected).allSatisfy { $0 == $1 || ($0.isNaN && $1.isNaN) }, "\(tableType) table")
        }
        let back = (try cl.embeddingBackward(tokens: tokens + [3, 0], vocab: 11, width: 37),
                    try cpu.embeddingBackward(tokens: tokens + [3, 0], vocab: 11, width: 37))
        #expect(firstMismatch(back.0, back.1, atol: 1e-6, rtol: 1e-6) == nil)
        #expect(try cl.blockCopy() == cpu.blockCopy())
        let (heads, reference) = (try cl.headsGEMM(tokens: 9, heads: 4, dim: 6), try cpu.headsGEMM(tokens: 9, heads: 4, dim: 6))
        #expect(firstMismatch(heads.scores, reference.scores, atol: 1e-5) == nil)
        #expect(firstMismatch(heads.out, reference.out, atol: 1e-5) == nil)
    }

    @Test("OpenCL attention (matmul.cl and softmax.cl launches) matches the CPU, with cached keys",
          arguments: [TrainingOpRunner.AttentionCase(b: 2, h: 3, d: 5, t: 37, tk: 37),
                      TrainingOpRunner.AttentionCase(b: 3, h: 5, d: 4, t: 19, tk: 26)])
    func attention(_ c: TrainingOpRunner.AttentionCase) throws {
        let (got, expected) = (try cl.attention(c), try cpu.attention(c))
        for (a, b) in [(got.p, expected.p), (got.context, expected.context), (got.dq, expected.dq), (got.dk, expected.dk),
                       (got.dv, expected.dv)] {
            #expect(firstMismatch(a, b, atol: 1e-5, rtol: 1e-4) == nil)
        }
    }

    @Test("OpenCL dropout (elementwise.cl) drops exactly the CPU's elements", arguments: [Float(0), 0.25, 0.9])
    func dropout(probability: Float) throws {
        #expect(try cl.dropout(count: 70_001, probability: probability) == cpu.dropout(count: 70_001, probability: probability))
    }

    @Test("OpenCL dropout with an index offset (a rank's rows of the global batch) drops the CPU's elements", arguments: [UInt32(1), 70_003, UInt32.max - 99])
    func dropoutOffset(offset: UInt32) throws {
        #expect(try cl.dropoutMask(count: 5_001, probability: 0.4, offset: offset) == cpu.dropoutMask(count: 5_001, probability: 0.4, offset: offset))
    }
}
