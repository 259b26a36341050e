// Typed tensors on the CPU: storage sized by dtype, bytes in and out, int32 ids, dtype validation, `Convert` against
// PyTorch's bits, and GEMMs with bfloat16/float16 operands against the float32 GEMM on the upcast values.
import Foundation
@testable import LoRARuntime
import LoRATestSupport
import Testing

@Suite("Typed tensors")
struct DTypeTests {
    let cpu = CPUBackend.shared

    @Test("GEMM with bf16/f16 A and/or B equals the float32 GEMM on the upcast values",
          arguments: GEMMCase.typedCases.indices)
    func typedGEMM(_ index: Int) throws {
        let c = GEMMCase.typedCases[index]
        let got = try c.run(on: cpu)
        // The upcast is exact and the math is float32 either way: the results agree to float32 rounding.
        #expect(firstMismatch(got, try c.run(on: cpu, upcast: true), atol: 1e-6, rtol: 1e-6) == nil, "\(c)")
        #expect(firstMismatch(got, c.reference(), atol: 1e-4, rtol: 1e-4) == nil, "\(c)")
    }

    @Test("storage is sized by dtype: n bf16 elements take 2n bytes")
    func storageSizes() throws {
        for dtype in DType.allCases {
            for n in [1, 7, 1_000_000] {
                let t = try cpu.empty([n], dtype: dtype)
                #expect(t.byteCount == n * dtype.size)
                #expect(t.storage.byteCount == HostMemoryPool.sizeClass(n * dtype.size), "\(dtype) × \(n)")
            }
        }
        #expect(DType.bfloat16.size == 2 && DType.float16.size == 2 && DType.int32.size == 4 && DType.uint8.size == 1)
        #expect(try cpu.zeros([1_000_000], dtype: .bfloat16).storage.byteCount < 2_300_000)
    }

    @Test("bytes round-trip for every dtype; zeros, copies and int32 ids")
    func bytesRoundTrip() throws {
        for dtype in DType.allCases {
            let bytes = (0..<(37 * dtype.size)).map { UInt8(truncatingIfNeeded: $0 &* 97 &+ 11) }
            let t = try bytes.withUnsafeBytes { try cpu.upload(bytes: $0, dtype: dtype, shape: [37]) }
            #expect(t.dtype == dtype && t.shape == [37])
            #expect(try cpu.downloadBytes(t) == bytes, "\(dtype)")
            let copy = try cpu.empty([37], dtype: dtype)
            try cpu.copy(t, to: copy)
            #expect(try cpu.downloadBytes(copy) == bytes, "\(dtype) copy")
            #expect(try cpu.downloadBytes(cpu.zeros([5, 3], dtype: dtype)).allSatisfy { $0 == 0 })
        }
        let ids: [Int32] = [0, -100, .max, .min, 50256]
        #expect(try cpu.downloadInt32(cpu.upload(ids, shape: [5])) == ids)
        // A float literal array still uploads float32.
        #expect(try cpu.upload([1, 2], shape: [2]).dtype == .float32)
    }

    @Test("dtypes are validated: each op names itself, the operand and the dtype")
    func validation() throws {
        let f32 = try cpu.zeros([4, 4]), bf16 = try cpu.zeros([4, 4], dtype: .bfloat16)
        let ints = try cpu.zeros([4, 4], dtype: .int32), ids = try cpu.zeros([4], dtype: .int32)
        func message(_ body: () throws -> Void) -> String? {
            do { try body() } catch let error as LoRAError {
                if case .unsupportedDType(let text) = error { return text }
                return "other error: \(error)"
            } catch { return "other error: \(error)" }
            return nil
        }
        #expect(message { _ = try cpu.download(bf16) } == "download: the tensor [4, 4] is bfloat16 (expected float32)")
        #expect(message { _ = try bf16.toArray() } != nil)
        #expect(message { try cpu.fill(bf16, with: 1) } == "fill: the tensor [4, 4] is bfloat16 (expected float32)")
        #expect(message { _ = try GEMM(a: ints, b: f32, c: f32) }
                == "gemm: A [4, 4] is int32 (expected float32 or bfloat16 or float16)")
        #expect(message { _ = try GEMM(a: f32, b: bf16, c: bf16) } == "gemm: C [4, 4] is bfloat16 (expected float32)")
        #expect(message { _ = try GEMM(a: f32, b: bf16, c: f32, bias: cpu.zeros([4], dtype: .float16)) }
                == "gemm: bias [4] is float16 (expected float32)")
        #expect(message { _ = try EmbeddingLookup(table: f32, indices: cpu.zeros([4]), output: f32) }
                == "embedding: indices [4] is float32 (expected int32)")
        #expect(message { _ = try EmbeddingLookup(table: ints, indices: ids, output: f32) }
                == "embedding: table [4, 4] is int32 (expected float32 or bfloat16 or float16)")
        #expect(message { _ = try EmbeddingBackward(indices: ids, dOutput: f32, dTable: bf16) }
                == "embeddingBackward: dTable [4, 4] is bfloat16 (expected float32)")
        #expect(message { _ = try Convert(source: ints, destination: f32) }
                == "convert: source [4, 4] is int32 (expected float32 or bfloat16 or float16)")
        #expect(message { try cpu.copy(bf16, to: f32) } == "copy: source is bfloat16 but destination is float32 (convert between dtypes)")
        #expect(message { _ = try LoRAProjection(x: f32, a: bf16, b: f32, scale: 1, y: f32) }
                == "loraProject: A [4, 4] is bfloat16 (expected float32)")
        #expect(message { _ = try Axpy(alpha: 1, x: bf16, y: f32) } == "axpy: x [4, 4] is bfloat16 (expected float32)")
        #expect(message { _ = try Reduction(.sum, of: bf16, into: cpu.zeros([1])) } == "reduce: x [4, 4] is bfloat16 (expected float32)")
        #expect(message { _ = try cpu.downloadInt32(f32) } == "downloadInt32: the tensor [4, 4] is float32 (expected int32)")
        #expect(throws: LoRAError.self) { try [UInt8](repeating: 0, count: 7).withUnsafeBytes { _ = try cpu.upload(bytes: $0, dtype: .bfloat16, shape: [4]) } }
        #expect(throws: LoRAError.self) { _ = try Convert(source: bf16, destination: cpu.zeros([3])) }
    }

    @Test("a bf16 or f16 embedding table is widened exactly as rows are read")
    func typedEmbedding() throws {
        let run = TrainingOpRunner(cpu)
        let tokens: [Int32] = [0, 10, 3, 3, -1, 11]
        let (vocab, width) = (11, 37)
        for dtype in [DType.bfloat16, .float16] {
            let got = try run.embedding(tokens: tokens, vocab: vocab, width: width, tableType: dtype)
            let table = typed(randomValues(vocab * width, seed: 33), dtype).upcast
            let positions = randomValues(tokens.count * width, seed: 34)
            for (n, id) in tokens.enumerated() {
                let row = Array(got[n * width..<(n + 1) * width])
                if n < 4 {
                    #expect(row == (0..<width).map { table[Int(id) * width + $0] + positions[n * width + $0] }, "\(dtype) row \(n)")
                } else {
                    #expect(row.allSatisfy { $0.isNaN }, "\(dtype) id \(id)")
                }
            }
        }
    }

    @Test("convert gives PyTorch's bits: ties to even, overflow to inf, subnormals, both 16-bit dtypes")
    func convertMatchesPyTorch() throws {
        let failures = try DTypeChecks.matchesPyTorch(DTypeRunner(cpu))
        #expect(failures.isEmpty, "\(failures.prefix(10))")
        // The scalar rules, which every kernel follows, too.
        let fixture = try DTypeFixture.load()
        for (i, bits) in fixture.float32.enumerated() {
            let value = Float(bitPattern: bits)
            #expect(Convert.bfloat16(value) == fixture.bfloat16[i] && Convert.float16(value) == fixture.float16[i],
                    "0x\(String(bits, radix: 16))")
        }
    }

    @Test("every bf16 and f16 pattern widens exactly and narrows back to itself; NaN stays NaN with its sign")
    func convertRoundTrips() throws {
        let failures = try DTypeChecks.roundTrips(DTypeRunner(cpu))
        #expect(failures.isEmpty, "\(failures.prefix(10))")
    }

    @Test("convert on more elements than one chunk, across the pool")
    func convertLarge() throws {
        let values = randomValues(300_001, seed: 5).map { $0 * 1000 }
        let x = try cpu.upload(values, shape: [300_001])
        let bf16 = try cpu.converted(x, to: .bfloat16), f16 = try cpu.converted(bf16, to: .float16)
        #expect(try cpu.converted(bf16, to: .float32).toArray() == typed(values, .bfloat16).upcast)
        #expect(try cpu.converted(f16, to: .float32).toArray() == typed(typed(values, .bfloat16).upcast, .float16).upcast)
    }
}
