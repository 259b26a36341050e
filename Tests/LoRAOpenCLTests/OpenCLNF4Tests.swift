// OpenCL NF4 (Kernels/nf4.cl): dequantization bitwise equal to the per-element reference and to the CPU, and the
// quantized GEMM against the Double reference and the CPU, over every tile edge and both absmax forms; weights
// quantized from bfloat16/float16 (elements rounded to them, bitwise as bitsandbytes) too.
import LoRATestSupport
import SwiftLoRA
import Testing

@Suite("OpenCL NF4", .enabled(if: TestDevices.runOpenCL, "\(TestDevices.skipReason)"))
struct OpenCLNF4Tests {
    static let weights: [NF4Case] = [
        NF4Case(rows: 1, columns: 1, blocksize: 64),
        NF4Case(rows: 7, columns: 33, blocksize: 32, nestedBlocksize: 3),
        NF4Case(rows: 33, columns: 65, blocksize: 64, nestedBlocksize: nil),
        NF4Case(rows: 65, columns: 130, blocksize: 64, nestedBlocksize: 5),
        NF4Case(rows: 130, columns: 7, blocksize: 128),
        NF4Case(rows: 577, columns: 1535, blocksize: 64),
        NF4Case(rows: 300, columns: 301, blocksize: 4096, nestedBlocksize: nil),
        NF4Case(rows: 7, columns: 33, blocksize: 32, nestedBlocksize: 3, dtype: .bfloat16),
        NF4Case(rows: 577, columns: 1535, blocksize: 64, dtype: .bfloat16),
        NF4Case(rows: 33, columns: 65, blocksize: 64, nestedBlocksize: nil, dtype: .float16),
        NF4Case(rows: 130, columns: 7, blocksize: 128, dtype: .float16),
    ]

    @Test("OpenCL NF4 dequantize equals the per-element reference and the CPU bitwise", arguments: weights)
    func dequantize(_ w: NF4Case) throws {
        var results: [[Float]] = []
        for backend in [CPUBackend.shared, try TestDevices.openCL.get()] as [any Backend] {
            let out = try backend.empty([w.rows, w.columns])
            try backend.dequantizeNF4(NF4Dequantize(weight: w.weight(on: backend), destination: out))
            results.append(try backend.download(out))
        }
        let expected = w.reference.map(\.bitPattern)
        let bad = results[1].indices.first { results[1][$0].bitPattern != expected[$0] }
        #expect(bad == nil, "\(w): element \(bad ?? 0) is \(bad.map { results[1][$0] } ?? 0), expected \(bad.map { w.reference[$0] } ?? 0)")
        let apart = results[1].indices.first { results[1][$0].bitPattern != results[0][$0].bitPattern }
        #expect(apart == nil, "\(w): element \(apart ?? 0) differs from the CPU's")
    }

    @Test("OpenCL NF4 dequantize of a bfloat16/float16 weight equals bitsandbytes' dequantize_4bit to that dtype bitwise",
          arguments: NF4DTypeFixture.cases)
    func dequantizeAsBitsAndBytes(name: String, dtype: DType) throws {
        let backend = try TestDevices.openCL.get()
        let weight = try NF4DTypeFixture.weight(name, dtype: dtype).upload(to: backend)
        let out = try backend.empty([weight.rows, weight.columns])
        try backend.dequantizeNF4(NF4Dequantize(weight: weight, destination: out))
        let (got, expected) = (try backend.download(out), try NF4DTypeFixture.expected(name, dtype: dtype))
        let bad = got.indices.first { got[$0].bitPattern != expected[$0].bitPattern }
        #expect(bad == nil, "\(name) \(dtype): element \(bad ?? 0) is \(bad.map { got[$0] } ?? 0), expected \(bad.map { expected[$0] } ?? 0)")
    }

    @Test("OpenCL quantized GEMM reads each element of W exactly as the reference dequantizes it (A = I)",
          arguments: [NF4Case(rows: 65, columns: 130, blocksize: 32, nestedBlocksize: 3),
                      NF4Case(rows: 33, columns: 7, blocksize: 64, nestedBlocksize: nil),
                      NF4Case(rows: 65, columns: 130, blocksize: 32, nestedBlocksize: 3, dtype: .bfloat16),
                      NF4Case(rows: 33, columns: 7, blocksize: 64, nestedBlocksize: nil, dtype: .float16)])
    func exactElements(_ w: NF4Case) throws {
        let backend = try TestDevices.openCL.get()
        let weight = try w.weight(on: backend)
        // A bfloat16/float16 weight is read rounded (the default) and, as the forward asks, unrounded.
        let roundings = w.dtype == .float32 ? [DType.float32] : [w.dtype, .float32]
        for (rounding, transposeW, kernel) in roundings.flatMap({ r in [true, false].flatMap { t in
            NF4GEMMKernel.allCases.map { (r, t, $0) } } }) {
            let reference = w.reference(rounding: rounding)
            // op(W) is [k, n]: I·op(W) sums one product by 1 and zeros, so each C element is the W element itself.
            let (k, n) = transposeW ? (w.columns, w.rows) : (w.rows, w.columns)
            let identity = (0..<k * k).map { $0 / k == $0 % k ? Float(1) : 0 }
            let c = try backend.empty([k, n])
            try backend.quantizedGEMM(QuantizedGEMM(a: backend.upload(identity, shape: [k, k]), weight: weight, c: c,
                                                    transposeW: transposeW, elementDType: rounding), kernel: kernel)
            let got = try backend.download(c)
            let expected = (0..<k * n).map { transposeW ? reference[($0 % n) * k + $0 / n] : reference[$0] }
            let bad = got.indices.first { got[$0] != expected[$0] }
            let at = bad ?? 0
            #expect(bad == nil, "\(w) \(rounding) elements, transposeW \(transposeW) \(kernel): C element \(at) is \(got[at]), expected \(expected[at])")
        }
    }

    @Test("OpenCL quantized GEMM (nf4.cl, both kernels) matches the Double reference and the CPU",
          arguments: QuantizedGEMMCase.edges + QuantizedGEMMCase.dtypeEdges, NF4GEMMKernel.allCases)
    func quantizedGEMM(_ g: QuantizedGEMMCase, kernel: NF4GEMMKernel) throws {
        let got = try g.run(on: TestDevices.openCL.get(), kernel: kernel)
        #expect(firstMismatch(got, g.reference, atol: g.tolerance.atol, rtol: g.tolerance.rtol) == nil, "\(g)")
        let cpu = try g.run(on: CPUBackend.shared)
        #expect(firstMismatch(got, cpu, atol: Float(g.tolerance.atol), rtol: Float(g.tolerance.rtol)) == nil, "\(g) vs CPU")
    }

    @Test("OpenCL quantized GEMM at a Llama layer's shape matches the CPU, forward and input gradient, both kernels")
    func layerShape() throws {
        for transposeW in [true, false] {
            let g = QuantizedGEMMCase(m: 96, n: transposeW ? 1536 : 576, k: transposeW ? 576 : 1536, transposeW: transposeW,
                                      beta: transposeW ? 0 : 1, bias: transposeW)
            let cpu = try g.run(on: CPUBackend.shared)
            for kernel in NF4GEMMKernel.allCases {
                let got = try g.run(on: TestDevices.openCL.get(), kernel: kernel)
                #expect(firstMismatch(got, cpu, atol: Float(g.tolerance.atol), rtol: Float(g.tolerance.rtol)) == nil, "\(g) \(kernel)")
            }
        }
    }
}
