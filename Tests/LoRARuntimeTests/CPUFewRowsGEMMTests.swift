// The CPU GEMM's few-rows kernel (x·Wᵀ with at most 16 rows, CPUBackend+GEMMFewRows.swift) against the packed
// path, bit for bit: a tall GEMM (over 16 rows, so packed) and the same product taken a few rows at a time (every
// split of its rows into pieces of 1...17, so each piece runs the few-rows kernel, or the packed path at 17) must
// agree in every bit, as batched generation needs (a request's rows alone and inside a batch; prefill rows and
// decode rows).
import LoRARuntime
import LoRATestSupport
import Testing

@Suite("CPU few-rows GEMM")
struct CPUFewRowsGEMMTests {
    struct Case: Sendable, CustomStringConvertible {
        var n: Int, k: Int
        var alpha: Float = 1, beta: Float = 0
        var typeA = DType.float32, typeB = DType.float32
        var transposeA = false, bias = false, pad = 0
        var description: String {
            "n \(n) k \(k) alpha \(alpha) beta \(beta) A \(typeA)\(transposeA ? "ᵀ" : "") B \(typeB) bias \(bias) pad \(pad)"
        }
    }

    /// Ragged n and k (not multiples of 16, 32 or kc = 768), k over two blocks of kc, alpha/beta, a bias, typed
    /// operands, a transposed A, padded leading dimensions; n below, at and above one 16-row group of W.
    static let cases: [Case] = [
        Case(n: 577, k: 579), Case(n: 70, k: 1541, alpha: -1.5, beta: 0.5, pad: 3),
        Case(n: 45, k: 800, beta: 1, bias: true), Case(n: 96, k: 200, alpha: 0.5, typeB: .bfloat16),
        Case(n: 83, k: 790, beta: 0.25, typeB: .float16, pad: 1), Case(n: 33, k: 1000, typeB: .bfloat16, bias: true),
        Case(n: 50, k: 300, alpha: -1, transposeA: true), Case(n: 40, k: 129, typeA: .bfloat16, typeB: .float16),
        Case(n: 20, k: 90, alpha: -2, transposeA: true), Case(n: 19, k: 64, beta: 0.5, bias: true),
        // n below 16 with a transposed A: a 9-16-row piece is swapped to Cᵀ = Bᵀ·Aᵀ and lands on the narrow kernel,
        // which keeps a −0 the packed path would store as +0 (not this kernel's doing), so alpha stays positive.
        Case(n: 7, k: 90, alpha: 2, transposeA: true),
    ]

    /// Rows of the tall product.
    static let rows = 40

    /// C's bits after one GEMM over rows `first..<first + m` of the shared operands (C starting from `c0`).
    static func run(_ c: Case, first: Int, m: Int, a: Tensor, w: Tensor, c0: [Float], bias: Tensor?,
                    on backend: CPUBackend) throws -> [UInt32] {
        let (lda, ldw, ldc) = (c.transposeA ? rows + c.pad : c.k + c.pad, c.k + c.pad, c.n + c.pad)
        let out = try backend.upload(c0, shape: [c0.count])
        let op = try GEMM(m: m, n: c.n, k: c.k, alpha: c.alpha,
                          a: GEMMOperand(a, offset: c.transposeA ? first : first * lda, ld: lda), transposeA: c.transposeA,
                          b: GEMMOperand(w, ld: ldw), transposeB: true,
                          beta: c.beta, c: GEMMOperand(out, offset: first * ldc, ld: ldc), bias: bias)
        try backend.gemm(op)
        let all = try backend.download(out)
        return Array(all[first * ldc..<(first + m) * ldc]).map(\.bitPattern)
    }

    @Test("few rows at a time give the tall (packed) product's bits, on 1 and 3 threads", arguments: cases)
    func matchesPacked(_ c: Case) throws {
        let (lda, ldw, ldc) = (c.transposeA ? Self.rows + c.pad : c.k + c.pad, c.k + c.pad, c.n + c.pad)
        var aValues = randomValues(c.transposeA ? c.k * lda : Self.rows * lda, seed: 5)
        // A zero row: with a negative alpha its products are −0, which the packed path turns into +0 only where it
        // stores element by element (its ragged last panel).
        for p in 0..<c.k { aValues[c.transposeA ? p * lda + 3 : 3 * lda + p] = 0 }
        let (wValues, c0, biasValues) = (randomValues(c.n * ldw, seed: 6), randomValues(Self.rows * ldc, seed: 7),
                                         randomValues(c.n, seed: 8))
        for threads in [1, 3] {
            let backend = CPUBackend(pool: ThreadPool(threadCount: threads))
            let a = try uploadTyped(aValues, c.typeA, shape: [aValues.count], on: backend)
            let w = try uploadTyped(wValues, c.typeB, shape: [wValues.count], on: backend)
            let bias = c.bias ? try backend.upload(biasValues, shape: [c.n]) : nil
            let tall = try Self.run(c, first: 0, m: Self.rows, a: a, w: w, c0: c0, bias: bias, on: backend)
            for piece in [1, 2, 3, 5, 7, 8, 9, 15, 16, 17] {
                var pieces: [UInt32] = []
                for first in stride(from: 0, to: Self.rows, by: piece) {
                    pieces += try Self.run(c, first: first, m: min(piece, Self.rows - first), a: a, w: w, c0: c0,
                                           bias: bias, on: backend)
                }
                #expect(pieces.count == tall.count)
                let mismatch = tall.indices.first { tall[$0] != pieces[$0] }
                #expect(mismatch == nil, "\(c), pieces of \(piece), \(threads) threads: first mismatch at \(mismatch ?? -1)")
            }
        }
    }

    @Test("few rows match the naive loop (transposed B, ragged, typed)",
          arguments: [GEMMCase(m: 1, n: 3001, k: 40, transposeB: true), GEMMCase(m: 16, n: 577, k: 1541, transposeB: true, beta: 0.5, pad: 2),
                      GEMMCase(m: 9, n: 100, k: 790, transposeA: true, transposeB: true, alpha: -1.5, bias: true)])
    func matchesReference(_ c: GEMMCase) throws {
        let got = try c.run(on: CPUBackend.shared)
        #expect(firstMismatch(got, c.reference(), atol: 1e-3, rtol: 1e-4) == nil, "\(c)")
    }
}
