// The OpenCL kernels of the Llama-family ops (normalization.cl's RMS norm, rotary.cl, activation.cl's SwiGLU,
// softmax.cl's window and the grouped-query attention launches) against the CPU ops. Names start with "OpenCL" so
// CI counts them.
import LoRATestSupport
import SwiftLoRA
import Testing

@Suite("OpenCL Llama ops", .enabled(if: TestDevices.runOpenCL, "\(TestDevices.skipReason)"))
struct OpenCLLlamaOpsTests {
    var cl: TrainingOpRunner { get throws { TrainingOpRunner(try TestDevices.openCL.get()) } }
    let cpu = TrainingOpRunner(CPUBackend.shared)

    @Test("OpenCL RMS norm (normalization.cl) matches the CPU, in place too", arguments: [(1, 1), (3, 7), (5, 300), (70, 768)])
    func rmsNorm(rows: Int, cols: Int) throws {
        let (got, expected) = (try cl.rmsNorm(rows: rows, cols: cols), try cpu.rmsNorm(rows: rows, cols: cols))
        #expect(firstMismatch(got.y, expected.y, atol: 1e-5, rtol: 1e-5) == nil)
        #expect(firstMismatch(got.rstd, expected.rstd, atol: 1e-7, rtol: 1e-5) == nil)
    }

    @Test("OpenCL RMS norm backward matches the CPU: written, accumulated, in place",
          arguments: [(1, 1), (3, 7), (33, 50), (70, 129)])
    func rmsNormBackward(rows: Int, cols: Int) throws {
        for (accumulate, inPlace) in [(false, false), (true, false), (false, true)] {
            let got = try cl.rmsNormBackward(rows: rows, cols: cols, accumulate: accumulate, inPlace: inPlace)
            let expected = try cpu.rmsNormBackward(rows: rows, cols: cols, accumulate: accumulate, inPlace: inPlace)
            #expect(firstMismatch(got.dx, expected.dx, atol: 1e-5, rtol: 1e-4) == nil, "accumulate \(accumulate) in place \(inPlace)")
            #expect(firstMismatch(got.dgamma, expected.dgamma, atol: 1e-4, rtol: 1e-4) == nil)
        }
    }

    @Test("OpenCL SwiGLU and its gradient (activation.cl) match the CPU, extremes and in place included")
    func swiglu() throws {
        let gates = randomValues(5001, seed: 50).map { 8 * $0 } + [0, -0.0, 1e-8, 30, -30, 100, -100, 1e30, -1e30]
        let (got, expected) = (try cl.swiglu(gates), try cpu.swiglu(gates))
        #expect(firstMismatch(got.y, expected.y, atol: 1e-6, rtol: 1e-5) == nil)
        #expect(firstMismatch(got.dGate, expected.dGate, atol: 1e-6, rtol: 1e-5) == nil)
        #expect(firstMismatch(got.dUp, expected.dUp, atol: 1e-6, rtol: 1e-5) == nil)
    }

    @Test("OpenCL RoPE and its inverse (rotary.cl) match the CPU, in place too",
          arguments: [TrainingOpRunner.RoPECase(b: 1, t: 1, heads: 1, d: 2, start: 0, positions: 1),
                      TrainingOpRunner.RoPECase(b: 2, t: 5, heads: 3, d: 6, start: 0, positions: 5),
                      TrainingOpRunner.RoPECase(b: 3, t: 4, heads: 4, d: 34, start: 9, positions: 20),
                      TrainingOpRunner.RoPECase(b: 2, t: 33, heads: 3, d: 128, start: 1, positions: 40)])
    func rope(_ c: TrainingOpRunner.RoPECase) throws {
        let (got, expected) = (try cl.rope(c), try cpu.rope(c))
        #expect(firstMismatch(got.y, expected.y, atol: 1e-6, rtol: 1e-5) == nil)
        #expect(firstMismatch(got.inverse, expected.inverse, atol: 1e-6, rtol: 1e-5) == nil)
    }

    @Test("OpenCL grouped-query and sliding-window attention (matmul.cl, softmax.cl launches) match the CPU",
          // Comments: how the query-side products / dK and dV are launched.
          arguments: [TrainingOpRunner.AttentionCase(b: 2, h: 4, kvHeads: 1, d: 5, t: 19, tk: 19),   // groups / sequences
                      TrainingOpRunner.AttentionCase(b: 3, h: 6, kvHeads: 2, d: 4, t: 13, tk: 21),   // sequences, cached keys
                      TrainingOpRunner.AttentionCase(b: 2, h: 8, kvHeads: 4, d: 4, t: 11, tk: 11),   // kv heads
                      TrainingOpRunner.AttentionCase(b: 2, h: 3, kvHeads: 3, d: 5, t: 37, tk: 37),   // plain
                      TrainingOpRunner.AttentionCase(b: 1, h: 6, kvHeads: 3, d: 8, t: 1, tk: 30),    // kv heads, one token
                      TrainingOpRunner.AttentionCase(b: 2, h: 4, kvHeads: 2, d: 5, t: 37, tk: 37, window: 8),
                      TrainingOpRunner.AttentionCase(b: 2, h: 4, kvHeads: 1, d: 17, t: 20, tk: 33, window: 5)])
    func attention(_ c: TrainingOpRunner.AttentionCase) throws {
        let (got, expected) = (try cl.attention(c), try cpu.attention(c))
        for (name, a, b) in [("p", got.p, expected.p), ("context", got.context, expected.context), ("dq", got.dq, expected.dq),
                             ("dk", got.dk, expected.dk), ("dv", got.dv, expected.dv)] {
            #expect(firstMismatch(a, b, atol: 1e-5, rtol: 1e-4) == nil, "\(name)")
        }
    }
}
