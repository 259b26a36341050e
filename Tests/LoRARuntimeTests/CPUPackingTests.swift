// Packed rows on the CPU: attention with segment starts equals each example run alone (forward and backward, with
// grouped-query heads and a window), the softmax op's starts match a reference, RoPE with per-row positions equals
// RoPE from a start where the positions are contiguous and restarts where they do; bad starts and positions are
// rejected or give NaN, never a read outside.
import Foundation
import LoRARuntime
import LoRATestSupport
import Testing

@Suite("CPU packed rows")
struct CPUPackingTests {
    let run = TrainingOpRunner(CPUBackend.shared)

    static let packedCases: [(segments: [[Int]], heads: Int, kvHeads: Int, d: Int, window: Int?)] = [
        ([[5, 9, 5], [1, 17, 1]], 4, 2, 5, nil),
        ([[19], [10, 9]], 2, 2, 8, nil),  // a row holding one example is plain causal attention
        ([[20, 17], [3, 3, 31]], 4, 1, 17, 8),  // with a window shorter than some examples
        ([[40, 2, 1, 21]], 3, 3, 16, nil),  // whole vectors in the softmax rows
    ]

    @Test("attention over packed rows equals each example alone: probabilities, context, dq, dk, dv",
          arguments: packedCases.indices)
    func packedAttentionEqualsSeparate(_ index: Int) throws {
        let c = Self.packedCases[index]
        let (packed, separate) = try run.packedAttention(segments: c.segments, heads: c.heads, kvHeads: c.kvHeads, d: c.d,
                                                         window: c.window)
        #expect(firstMismatch(packed.p, separate.p, atol: 1e-6, rtol: 1e-5) == nil)
        #expect(firstMismatch(packed.context, separate.context, atol: 1e-6, rtol: 1e-5) == nil)
        #expect(firstMismatch(packed.dq, separate.dq, atol: 1e-6, rtol: 1e-5) == nil)
        #expect(firstMismatch(packed.dk, separate.dk, atol: 1e-6, rtol: 1e-5) == nil)
        #expect(firstMismatch(packed.dv, separate.dv, atol: 1e-6, rtol: 1e-5) == nil)
    }

    @Test("segment starts all 0 change nothing: the same bits as unpacked attention")
    func zeroStartsAreCausal() throws {
        let plain = try run.attention(.init(b: 2, h: 4, kvHeads: 2, d: 5, t: 19, tk: 19))
        let one = try run.attention(.init(b: 2, h: 4, kvHeads: 2, d: 5, t: 19, tk: 19, segments: [[19], [19]]))
        #expect(plain.p == one.p && plain.context == one.context && plain.dq == one.dq && plain.dk == one.dk && plain.dv == one.dv)
    }

    @Test("the softmax op with segment starts matches a reference; a start past the row leaves it 0")
    func softmaxStarts() throws {
        let cpu = CPUBackend.shared
        let (b, heads, tq, tk) = (2, 3, 6, 6)
        let starts: [Int32] = [0, 0, 2, 2, 2, 5, 0, 1, 1, 3, 9, -4]  // 9: past its keys (none); -4: as 0
        let x = randomValues(b * heads * tq * tk, seed: 75).map { 4 * $0 }
        let t = try cpu.upload(x, shape: [b, heads, tq, tk])
        let startTensor = try cpu.upload(starts, shape: [b, tq])
        try cpu.softmax(Softmax(x: t, y: t, scale: 0.7, causal: true, segmentStarts: startTensor))
        let y = try t.toArray()
        var dyValues = randomValues(x.count, seed: 76)
        var (expected, expectedDx) = ([Double](repeating: 0, count: x.count), [Double](repeating: 0, count: x.count))
        for r in 0..<b * heads * tq {
            let i = r % tq, start = Int(starts[(r / tq / heads) * tq + i])
            let keys = Array(min(max(0, start), i + 1)..<i + 1)
            let e = keys.map { Foundation.exp(0.7 * Double(x[r * tk + $0])) }, total = e.reduce(0, +)
            for (n, j) in keys.enumerated() { expected[r * tk + j] = e[n] / total }
            for j in 0..<tk where !keys.contains(j) { dyValues[r * tk + j] = .nan }  // masked dy is never read
            let dot = keys.reduce(0.0) { $0 + Double(dyValues[r * tk + $1]) * Double(y[r * tk + $1]) }
            for j in keys { expectedDx[r * tk + j] = 0.7 * Double(y[r * tk + j]) * (Double(dyValues[r * tk + j]) - dot) }
        }
        #expect(firstMismatch(y, expected, atol: 1e-6) == nil)
        let dy = try cpu.upload(dyValues, shape: [b, heads, tq, tk])
        try cpu.softmaxBackward(SoftmaxBackward(y: t, dy: dy, dx: dy, scale: 0.7, causal: true, segmentStarts: startTensor))
        #expect(firstMismatch(try dy.toArray(), expectedDx, atol: 1e-6) == nil)
    }

    @Test("RoPE with contiguous per-row positions gives the bits of RoPE from a start", arguments: CPULlamaOpsTests.ropeCases)
    func ropePositionsMatchStart(_ c: TrainingOpRunner.RoPECase) throws {
        let positions = (0..<c.b * c.t).map { c.start + $0 % c.t }
        let (fromStart, fromPositions) = (try run.rope(c), try run.rope(c, positions: positions))
        #expect(fromStart.y == fromPositions.y && fromStart.inverse == fromPositions.inverse)
    }

    @Test("RoPE with positions restarting per example rotates each row by its own position")
    func ropeRestartingPositions() throws {
        let c = TrainingOpRunner.RoPECase(b: 2, t: 9, heads: 3, d: 34, start: 0, positions: 12)
        let positions = [0, 1, 2, 3, 0, 1, 0, 1, 2] + [0, 1, 2, 3, 4, 5, 6, 0, 11]
        let got = try run.rope(c, positions: positions)
        // Row by row, a one-row RoPE from the row's position.
        let cpu = CPUBackend.shared, width = c.heads * c.d
        let (cos, sin) = (try cpu.upload(c.cos, shape: [c.positions, c.d / 2]), try cpu.upload(c.sin, shape: [c.positions, c.d / 2]))
        for (row, p) in positions.enumerated() {
            for inverse in [false, true] {
                let x = try cpu.upload(Array(c.x[row * width..<(row + 1) * width]), shape: [1, width])
                try cpu.rope(RoPE(input: x, output: x, heads: c.heads, headDim: c.d, sequenceLength: 1, start: p, cos: cos, sin: sin,
                                  inverse: inverse))
                #expect(try x.toArray() == Array((inverse ? got.inverse : got.y)[row * width..<(row + 1) * width]), "row \(row)")
            }
        }
    }

    @Test("a position outside the tables writes NaN over its row and nothing else")
    func ropeBadPosition() throws {
        let c = TrainingOpRunner.RoPECase(b: 1, t: 3, heads: 2, d: 4, start: 0, positions: 5)
        let got = try run.rope(c, positions: [1, 5, -1])
        let width = c.heads * c.d
        let finite = got.y[..<width].allSatisfy { $0.isFinite }
        let nan = got.y[width...].allSatisfy { $0.isNaN } && got.inverse[width...].allSatisfy { $0.isNaN }
        #expect(finite && nan)
    }

    @Test("segment starts and positions of the wrong dtype or count are rejected with a message")
    func validation() throws {
        let cpu = CPUBackend.shared
        let shape = try AttentionShape(sequences: 2, heads: 2, headDim: 4, queries: 3, keys: 3, scale: 1)
        let x = try cpu.zeros([6, 8]), p = try cpu.zeros(shape.probabilityShape)
        let view = HeadOperand(x, ld: 8, sequenceStride: 24, headStride: 4)
        for bad in [try cpu.zeros([6]), try cpu.upload([Int32](repeating: 0, count: 5), shape: [5])] {
            #expect(throws: LoRAError.self) {
                try Attention(shape, query: view, key: view, value: view, probabilities: p, context: view, segmentStarts: bad)
            }
            #expect(throws: LoRAError.self) {
                try AttentionBackward(shape, query: view, key: view, value: view, probabilities: p, dContext: view,
                                      dQuery: view, dKey: view, dValue: view, segmentStarts: bad)
            }
        }
        let scores = try cpu.zeros([2, 2, 3, 3])
        #expect(throws: LoRAError.self) {  // starts need the causal mask
            try Softmax(x: scores, y: scores, segmentStarts: cpu.upload([Int32](repeating: 0, count: 6), shape: [2, 3]))
        }
        #expect(throws: LoRAError.self) {  // 3 sequences do not divide the 4 blocks of rows
            try Softmax(x: scores, y: scores, causal: true, segmentStarts: cpu.upload([Int32](repeating: 0, count: 9), shape: [3, 3]))
        }
        let cos = try cpu.zeros([4, 2])
        #expect(throws: LoRAError.self) {
            try RoPE(input: x, output: x, heads: 2, headDim: 4, sequenceLength: 3, start: 0, cos: cos, sin: cos,
                     positions: cpu.upload([Int32](repeating: 0, count: 5), shape: [5]))
        }
        #expect(throws: LoRAError.self) {
            try RoPE(input: x, output: x, heads: 2, headDim: 4, sequenceLength: 3, start: 0, cos: cos, sin: cos, positions: cpu.zeros([6]))
        }
    }
}
