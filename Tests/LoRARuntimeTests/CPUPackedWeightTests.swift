// Weights packed once for the CPU GEMM (PackedWeight.swift): a product reading a packed weight gives the bits of
// the same product on the unpacked weight, for every number of rows (a decode step's few, a prefill's hundreds),
// both orientations (x·Wᵀ and GPT-2's x·W), ragged n and k (k over two blocks of kc), alpha, beta, a bias, a
// padded A and 1 or 3 threads; what is not packed (16-bit or rank-wide weights) and what does not use the copy.
import LoRARuntime
import LoRATestSupport
import Testing

@Suite("CPU packed weights")
struct CPUPackedWeightTests {
    struct Case: Sendable, CustomStringConvertible {
        var n: Int, k: Int
        var transposed = true
        var alpha: Float = 1, beta: Float = 0
        var bias = false, padA = 0
        var description: String {
            "n \(n) k \(k) \(transposed ? "x·Wᵀ" : "x·W") alpha \(alpha) beta \(beta) bias \(bias) padA \(padA)"
        }
    }

    static let cases: [Case] = [
        Case(n: 577, k: 579), Case(n: 70, k: 1541, alpha: -1.5, beta: 0.5, padA: 3),
        Case(n: 45, k: 800, beta: 1, bias: true), Case(n: 96, k: 200, transposed: false, bias: true),
        Case(n: 33, k: 1000, transposed: false, alpha: 0.5, beta: 0.25, padA: 1), Case(n: 17, k: 64),
    ]
    static let rowCounts = [1, 2, 7, 16, 17, 40, 300]

    /// C's bits after `C = alpha·A·op(W) + beta·C0 (+ bias)` over m rows.
    static func product(_ c: Case, m: Int, a: Tensor, w: Tensor, c0: [Float], bias: Tensor?,
                        on backend: CPUBackend) throws -> [UInt32] {
        let out = try backend.upload(Array(c0[0..<m * c.n]), shape: [m, c.n])
        try backend.gemm(GEMM(m: m, n: c.n, k: c.k, alpha: c.alpha, a: GEMMOperand(a, ld: c.k + c.padA),
                              b: GEMMOperand(w, ld: w.shape[1]), transposeB: c.transposed,
                              beta: c.beta, c: GEMMOperand(out, ld: c.n), bias: bias))
        return try backend.download(out).map(\.bitPattern)
    }

    @Test("a packed weight gives the unpacked product's bits, for 1 to 300 rows, on 1 and 3 threads", arguments: cases)
    func matchesUnpacked(_ c: Case) throws {
        let rows = Self.rowCounts.max()!
        let aValues = randomValues(rows * (c.k + c.padA), seed: 11)
        let (wValues, c0, biasValues) = (randomValues(c.n * c.k, seed: 12), randomValues(rows * c.n, seed: 13),
                                         randomValues(c.n, seed: 14))
        for threads in [1, 3] {
            let backend = CPUBackend(pool: ThreadPool(threadCount: threads))
            let a = try backend.upload(aValues, shape: [rows, c.k + c.padA])
            let plain = try backend.upload(wValues, shape: c.transposed ? [c.n, c.k] : [c.k, c.n])
            let packed = try backend.upload(wValues, shape: plain.shape)
            #expect(try backend.packWeight(packed, transposed: c.transposed))
            #expect(packed.packing?.transposed == c.transposed)
            let bias = c.bias ? try backend.upload(biasValues, shape: [c.n]) : nil
            for m in Self.rowCounts {
                let expected = try Self.product(c, m: m, a: a, w: plain, c0: c0, bias: bias, on: backend)
                let got = try Self.product(c, m: m, a: a, w: packed, c0: c0, bias: bias, on: backend)
                let mismatch = expected.indices.first { expected[$0] != got[$0] }
                #expect(mismatch == nil, "\(c), \(m) rows, \(threads) threads: first mismatch at \(mismatch ?? -1)")
            }
        }
    }

    @Test("the copy is used only as it was packed: the other orientation and a stale copy show it")
    func usedOnlyAsPacked() throws {
        let backend = CPUBackend.shared
        let (n, k, m) = (40, 24, 5)
        let w = try backend.upload(randomValues(n * k, seed: 1), shape: [n, k])
        let x = try backend.upload(randomValues(m * k, seed: 2), shape: [m, k])
        let dy = try backend.upload(randomValues(m * n, seed: 3), shape: [m, n])
        #expect(try backend.packWeight(w, transposed: true))
        let before = try backend.matmul(x, w, transposeB: true).toArray()
        // The copy does not follow writes (the caller's duty): overwriting W leaves x·Wᵀ on the old weight, which
        // shows the copy is what the product reads...
        try backend.fill(w, with: 0)
        #expect(try backend.matmul(x, w, transposeB: true).toArray() == before)
        // ...while dy·W (not transposed: the other orientation) reads W itself.
        #expect(try backend.matmul(dy, w).toArray().allSatisfy { $0 == 0 })
        w.packing = nil
        #expect(try backend.matmul(x, w, transposeB: true).toArray().allSatisfy { $0 == 0 })
    }

    @Test("16-bit and rank-wide weights are not packed; a weight that is not a matrix is refused")
    func notPacked() throws {
        let backend = CPUBackend.shared
        let half = try uploadTyped(randomValues(64 * 32, seed: 4), .bfloat16, shape: [64, 32], on: backend)
        #expect(try !backend.packWeight(half, transposed: true))
        #expect(half.packing == nil)
        let narrow = try backend.upload(randomValues(16 * 64, seed: 5), shape: [16, 64])
        #expect(try !backend.packWeight(narrow, transposed: true))
        #expect(try backend.packWeight(narrow, transposed: false))
        #expect(throws: LoRAError.self) { try backend.packWeight(backend.zeros([2, 3, 4]), transposed: true) }
    }
}
