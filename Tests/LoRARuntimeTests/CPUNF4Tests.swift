// The CPU's NF4 ops: dequantization bitwise against the per-element reference, and the quantized GEMM bitwise
// against the float GEMM on the dequantized weight (same micro-kernel, same order of terms) and close to Double.
import LoRATestSupport
import LoRARuntime
import Testing

/// Weights with blocks spanning rows, odd counts (a padding nibble), a partial last block, partial nested groups.
let nf4Weights: [NF4Case] = [
    NF4Case(rows: 1, columns: 1, blocksize: 64),
    NF4Case(rows: 7, columns: 33, blocksize: 32, nestedBlocksize: 3),
    NF4Case(rows: 33, columns: 65, blocksize: 64, nestedBlocksize: nil),
    NF4Case(rows: 65, columns: 130, blocksize: 64, nestedBlocksize: 5),
    NF4Case(rows: 130, columns: 7, blocksize: 128),
    NF4Case(rows: 577, columns: 1535, blocksize: 64),
    NF4Case(rows: 300, columns: 301, blocksize: 4096, nestedBlocksize: nil),
]

@Suite("CPU NF4")
struct CPUNF4Tests {
    @Test("NF4 dequantize equals the per-element reference bitwise", arguments: nf4Weights)
    func dequantize(_ w: NF4Case) throws {
        let backend = CPUBackend.shared
        let out = try backend.empty([w.rows, w.columns])
        try backend.dequantizeNF4(NF4Dequantize(weight: w.weight(on: backend), destination: out))
        let (got, expected) = (try backend.download(out), w.reference)
        let bad = got.indices.first { got[$0].bitPattern != expected[$0].bitPattern }
        #expect(bad == nil, "\(w): element \(bad ?? 0) is \(bad.map { got[$0] } ?? 0), expected \(bad.map { expected[$0] } ?? 0)")
    }

    @Test("quantized GEMM equals the float GEMM on the dequantized weight bitwise, and the Double reference closely",
          arguments: QuantizedGEMMCase.edges)
    func quantizedGEMM(_ g: QuantizedGEMMCase) throws {
        let backend = CPUBackend.shared
        let got = try g.run(on: backend)
        let dense = try g.runDense(on: backend)
        let bad = got.indices.first { got[$0] != dense[$0] }
        #expect(bad == nil, "\(g): element \(bad ?? 0) is \(bad.map { got[$0] } ?? 0), dense GEMM \(bad.map { dense[$0] } ?? 0)")
        #expect(firstMismatch(got, g.reference, atol: g.tolerance.atol, rtol: g.tolerance.rtol) == nil, "\(g)")
    }

    @Test("quantized GEMM is bitwise the same on one thread and on several")
    func threadCounts() throws {
        let g = QuantizedGEMMCase(m: 257, n: 200, k: 900, transposeW: true, bias: true)
        let single = CPUBackend(pool: ThreadPool(threadCount: 1))
        let multi = CPUBackend(pool: ThreadPool(threadCount: 3))
        for transposeW in [true, false] {
            var c = g
            c.transposeW = transposeW
            #expect(try c.run(on: single) == c.run(on: multi), "\(c)")
        }
    }

    @Test("quantized GEMM rejects an A whose width is not W's k, and a C of the wrong shape")
    func validation() throws {
        let backend = CPUBackend.shared
        let w = try NF4Case(rows: 8, columns: 6).weight(on: backend)
        #expect(throws: LoRAError.self) {
            try QuantizedGEMM(a: backend.zeros([4, 8]), weight: w, c: backend.zeros([4, 8]), transposeW: true)
        }
        #expect(throws: LoRAError.self) {
            try QuantizedGEMM(a: backend.zeros([4, 8]), weight: w, c: backend.zeros([4, 8]), transposeW: false)
        }
        #expect(throws: LoRAError.self) {
            try NF4Dequantize(weight: w, destination: backend.zeros([47]))
        }
    }
}
