// The CPU's NF4 ops: dequantization bitwise against the per-element reference, and the quantized GEMM bitwise
// against the float GEMM on the dequantized weight (same micro-kernel, same order of terms) and close to Double;
// for weights quantized from bfloat16 and float16 too, whose elements round to that dtype.
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
    NF4Case(rows: 7, columns: 33, blocksize: 32, nestedBlocksize: 3, dtype: .bfloat16),
    NF4Case(rows: 33, columns: 65, blocksize: 64, nestedBlocksize: nil, dtype: .bfloat16),
    NF4Case(rows: 577, columns: 1535, blocksize: 64, dtype: .bfloat16),
    NF4Case(rows: 7, columns: 33, blocksize: 32, nestedBlocksize: 3, dtype: .float16),
    NF4Case(rows: 130, columns: 7, blocksize: 128, dtype: .float16),
    NF4Case(rows: 300, columns: 301, blocksize: 4096, nestedBlocksize: nil, dtype: .float16),
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

    @Test("NF4 dequantize of a bfloat16/float16 weight equals bitsandbytes' dequantize_4bit to that dtype bitwise",
          arguments: NF4DTypeFixture.cases)
    func dequantizeAsBitsAndBytes(name: String, dtype: DType) throws {
        let backend = CPUBackend.shared
        let weight = try NF4DTypeFixture.weight(name, dtype: dtype).upload(to: backend)
        #expect(weight.dtype == dtype)
        let out = try backend.empty([weight.rows, weight.columns])
        try backend.dequantizeNF4(NF4Dequantize(weight: weight, destination: out))
        let (got, expected) = (try backend.download(out), try NF4DTypeFixture.expected(name, dtype: dtype))
        let bad = got.indices.first { got[$0].bitPattern != expected[$0].bitPattern }
        #expect(bad == nil, "\(name) \(dtype): element \(bad ?? 0) is \(bad.map { got[$0] } ?? 0), expected \(bad.map { expected[$0] } ?? 0)")
    }

    @Test("quantized GEMM equals the float GEMM on the dequantized weight bitwise, and the Double reference closely",
          arguments: QuantizedGEMMCase.edges + QuantizedGEMMCase.dtypeEdges)
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

    @Test("a bfloat16 or float16 weight's elements are rounded: most differ from the float32 products")
    func roundingMatters() throws {
        let backend = CPUBackend.shared
        for dtype in [DType.bfloat16, .float16] {
            let w = NF4Case(rows: 33, columns: 65, dtype: dtype)
            let out = try backend.empty([w.rows, w.columns])
            try backend.dequantizeNF4(NF4Dequantize(weight: w.weight(on: backend), destination: out))
            let (got, unrounded) = (try backend.download(out), w.reference(rounding: .float32))
            let differing = zip(got, unrounded).filter { $0 != $1 }.count
            #expect(differing > got.count / 2, "\(dtype): \(differing) of \(got.count) elements rounded")
        }
        // The same weight multiplied with float32 elements and with its own: different results.
        var g = QuantizedGEMMCase(m: 9, n: 40, k: 70, transposeW: true, dtype: .bfloat16)
        let rounded = try g.run(on: backend)
        g.elementDType = .float32
        #expect(try g.run(on: backend) != rounded)
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
        #expect(throws: LoRAError.self) {
            try QuantizedGEMM(a: backend.zeros([4, 6]), weight: w, c: backend.zeros([4, 8]), transposeW: true, elementDType: .int32)
        }
        #expect(throws: LoRAError.self) {
            try NF4Weight(rows: 8, columns: 6, blocksize: 64, codes: w.codes, map: w.map, absmax: w.absmax, dtype: .uint8)
        }
    }
}
