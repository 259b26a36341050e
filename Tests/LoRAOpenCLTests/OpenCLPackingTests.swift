// Packed rows on OpenCL (softmax.cl's segment starts, rotary.cl's per-row positions): attention with segment starts
// against the CPU op and against each example run alone, RoPE with positions against the CPU and against RoPE from a
// start. Names start with "OpenCL" so CI counts them.
import LoRATestSupport
import SwiftLoRA
import Testing

@Suite("OpenCL packed rows", .enabled(if: TestDevices.runOpenCL, "\(TestDevices.skipReason)"))
struct OpenCLPackingTests {
    var cl: TrainingOpRunner { get throws { TrainingOpRunner(try TestDevices.openCL.get()) } }
    let cpu = TrainingOpRunner(CPUBackend.shared)

    @Test("OpenCL attention over packed rows (softmax.cl's segment starts) matches the CPU, with a window and cached keys",
          arguments: [TrainingOpRunner.AttentionCase(b: 2, h: 4, kvHeads: 2, d: 5, t: 19, tk: 19, segments: [[5, 9, 5], [1, 17, 1]]),
                      TrainingOpRunner.AttentionCase(b: 2, h: 4, kvHeads: 1, d: 17, t: 37, tk: 37, window: 8,
                                                     segments: [[20, 17], [3, 3, 31]]),
                      TrainingOpRunner.AttentionCase(b: 2, h: 6, kvHeads: 2, d: 4, t: 13, tk: 21, segments: [[6, 7], [13]])])
    func attention(_ c: TrainingOpRunner.AttentionCase) throws {
        let (got, expected) = (try cl.attention(c), try cpu.attention(c))
        for (name, a, b) in [("p", got.p, expected.p), ("context", got.context, expected.context), ("dq", got.dq, expected.dq),
                             ("dk", got.dk, expected.dk), ("dv", got.dv, expected.dv)] {
            #expect(firstMismatch(a, b, atol: 1e-5, rtol: 1e-4) == nil, "\(name)")
        }
    }

    @Test("OpenCL attention over packed rows equals each example alone on OpenCL")
    func packedEqualsSeparate() throws {
        let (packed, separate) = try cl.packedAttention(segments: [[5, 9, 5], [1, 17, 1]], heads: 4, kvHeads: 2, d: 5)
        for (name, a, b) in [("p", packed.p, separate.p), ("context", packed.context, separate.context),
                             ("dq", packed.dq, separate.dq), ("dk", packed.dk, separate.dk), ("dv", packed.dv, separate.dv)] {
            #expect(firstMismatch(a, b, atol: 1e-6, rtol: 1e-5) == nil, "\(name)")
        }
    }

    @Test("OpenCL RoPE with per-row positions (rotary.cl) matches the CPU and RoPE from a start; outside the tables, NaN")
    func ropePositions() throws {
        let c = TrainingOpRunner.RoPECase(b: 2, t: 9, heads: 3, d: 34, start: 2, positions: 12)
        let restarting = [0, 1, 2, 3, 0, 1, 0, 1, 2] + [0, 1, 2, 3, 4, 5, 6, 0, 11]
        let (got, expected) = (try cl.rope(c, positions: restarting), try cpu.rope(c, positions: restarting))
        #expect(firstMismatch(got.y, expected.y, atol: 1e-6, rtol: 1e-5) == nil)
        #expect(firstMismatch(got.inverse, expected.inverse, atol: 1e-6, rtol: 1e-5) == nil)
        let contiguous = (0..<c.b * c.t).map { c.start + $0 % c.t }
        let (fromPositions, fromStart) = (try cl.rope(c, positions: contiguous), try cl.rope(c))
        #expect(fromPositions.y == fromStart.y && fromPositions.inverse == fromStart.inverse)
        let bad = try cl.rope(TrainingOpRunner.RoPECase(b: 1, t: 3, heads: 2, d: 4, start: 0, positions: 5), positions: [1, 5, -1])
        #expect(bad.y.prefix(8).allSatisfy { $0.isFinite } && bad.y.dropFirst(8).allSatisfy { $0.isNaN })
    }
}
