// Typed tensors on OpenCL: the GEMM kernel built with every A_TYPE/B_TYPE option against the CPU's float32 GEMM on
// the upcast values, convert.cl against PyTorch's bits and exhaustive round trips, and typed storage through the
// buffer pool. Test names start with "OpenCL".
import Foundation
import LoRATestSupport
@testable import LoRAOpenCL
import SwiftLoRA
import Testing

@Suite("OpenCL typed tensors", .enabled(if: TestDevices.runOpenCL, "\(TestDevices.skipReason)"))
struct OpenCLDTypeTests {
    var cl: OpenCLBackend { get throws { try TestDevices.openCL.get() } }
    let cpu = CPUBackend.shared

    @Test("OpenCL GEMM kernel with bf16/f16 A and/or B (matmul.cl A_TYPE, B_TYPE) matches the CPU's float32 GEMM on the upcast values",
          arguments: GEMMCase.typedCases.indices)
    func typedGEMM(_ index: Int) throws {
        let c = GEMMCase.typedCases[index]
        let expected = try c.run(on: cpu, upcast: true)
        #expect(firstMismatch(try c.run(on: cl, engine: .kernel), expected, atol: 1e-4, rtol: 1e-4) == nil, "\(c)")
        // The default engine routes typed operands to the kernel whatever the measurement chose.
        #expect(firstMismatch(try c.run(on: cl), expected, atol: 1e-4, rtol: 1e-4) == nil, "\(c)")
    }

    @Test("OpenCL GEMM kernel: every pair of operand dtypes and transposes (3 × 3 × 4 programs)")
    func everyTypeOption() throws {
        for typeA in DType.floatingPoint {
            for typeB in DType.floatingPoint {
                for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                    var c = GEMMCase(m: 29, n: 35, k: 41, transposeA: ta, transposeB: tb, beta: 0.5, pad: 1, bias: true)
                    (c.typeA, c.typeB) = (typeA, typeB)
                    #expect(firstMismatch(try c.run(on: cl, engine: .kernel), try c.run(on: cpu, upcast: true),
                                          atol: 1e-4, rtol: 1e-4) == nil, "\(c)")
                }
            }
        }
    }

    @Test("OpenCL GEMM through CLBlast refuses typed operands", .enabled(if: OpenCL.isCLBlastAvailable, "CLBlast not installed"))
    func clblastRefusesTyped() throws {
        let backend = try cl
        let a = try backend.zeros([4, 4], dtype: .bfloat16), c = try backend.zeros([4, 4])
        #expect(throws: LoRAError.self) { try backend.gemm(GEMM(a: a, b: c, c: c), engine: .clblast) }
    }

    @Test("OpenCL convert (convert.cl) gives PyTorch's bits: ties to even, overflow, subnormals")
    func convertMatchesPyTorch() throws {
        let failures = try DTypeChecks.matchesPyTorch(DTypeRunner(cl))
        #expect(failures.isEmpty, "\(failures.prefix(10))")
    }

    @Test("OpenCL convert: every bf16 and f16 pattern widens exactly and narrows back; NaN stays NaN with its sign")
    func convertRoundTrips() throws {
        let failures = try DTypeChecks.roundTrips(DTypeRunner(cl))
        #expect(failures.isEmpty, "\(failures.prefix(10))")
    }

    @Test("OpenCL typed storage: sized by dtype, bytes round-trip, zeros, copies, int32 ids; float download refuses bf16")
    func typedStorage() throws {
        let backend = try cl
        for dtype in DType.allCases {
            let n = 1_000_001
            let t = try backend.empty([n], dtype: dtype)
            #expect(t.storage.byteCount == BufferPool.sizeClass(n * dtype.size), "\(dtype)")
            let bytes = (0..<(37 * dtype.size)).map { UInt8(truncatingIfNeeded: $0 &* 97 &+ 11) }
            let small = try bytes.withUnsafeBytes { try backend.upload(bytes: $0, dtype: dtype, shape: [37]) }
            #expect(try backend.downloadBytes(small) == bytes, "\(dtype)")
            let copy = try backend.empty([37], dtype: dtype)
            try backend.copy(small, to: copy)
            #expect(try backend.downloadBytes(copy) == bytes, "\(dtype) copy")
            #expect(try backend.downloadBytes(backend.zeros([3, 5], dtype: dtype)).allSatisfy { $0 == 0 }, "\(dtype) zeros")
        }
        let ids: [Int32] = [0, -100, .max, .min, 50256]
        #expect(try backend.downloadInt32(backend.upload(ids, shape: [5])) == ids)
        let error = #expect(throws: LoRAError.self) { _ = try backend.download(backend.zeros([2], dtype: .bfloat16)) }
        #expect(error == .unsupportedDType("download: the tensor [2] is bfloat16 (expected float32)"))
    }
}
