// Bad calls give a LoRAError that names the problem, never a crash.
import LoRARuntime
import LoRATestSupport
import Testing

@Suite("Validation")
struct ValidationTests {
    let cpu = CPUBackend.shared

    @Test("mismatched GEMM shapes are rejected with both shapes named")
    func gemmShapes() throws {
        let a = try cpu.zeros([3, 4]), b = try cpu.zeros([5, 6]), c = try cpu.zeros([3, 6])
        let error = #expect(throws: LoRAError.self) { try GEMM(a: a, b: b, c: c) }
        #expect(error?.description.contains("[3, 4]") == true && error?.description.contains("[5, 6]") == true)
        #expect(throws: LoRAError.self) { try GEMM(a: a, b: cpu.zeros([4, 6]), c: cpu.zeros([3, 5])) }
    }

    @Test("an operand that would be read past its end is rejected")
    func gemmExtent() throws {
        let a = try cpu.zeros([10]), c = try cpu.zeros([4])
        #expect(throws: LoRAError.self) {
            try GEMM(m: 2, n: 2, k: 3, a: GEMMOperand(a, ld: 3), b: GEMMOperand(a, offset: 5, ld: 2), c: GEMMOperand(c, ld: 2))
        }
        #expect(throws: LoRAError.self) {
            try GEMM(m: 2, n: 2, k: 2, a: GEMMOperand(a, ld: 1), b: GEMMOperand(a, ld: 2), c: GEMMOperand(c, ld: 2))
        }
    }

    @Test("softmax, LoRA and bias shapes are checked")
    func otherShapes() throws {
        #expect(throws: LoRAError.self) { try Softmax(x: cpu.zeros([2, 3]), y: cpu.zeros([3, 2])) }
        #expect(throws: LoRAError.self) { try Softmax(x: cpu.zeros([3]), y: cpu.zeros([3]), causal: true) }
        #expect(throws: LoRAError.self) {
            try LoRAProjection(x: cpu.zeros([2, 4]), a: cpu.zeros([2, 5]), b: cpu.zeros([3, 2]), scale: 1, y: cpu.zeros([2, 3]))
        }
        #expect(throws: LoRAError.self) {
            try LoRAProjection(x: cpu.zeros([2, 4]), a: cpu.zeros([2, 4]), b: cpu.zeros([3, 3]), scale: 1, y: cpu.zeros([2, 3]))
        }
        #expect(throws: LoRAError.self) { try BiasAdd(bias: cpu.zeros([4]), y: cpu.zeros([2, 3])) }
    }

    @Test("tensor shapes and uploads are checked")
    func tensors() throws {
        #expect(throws: LoRAError.self) { try cpu.zeros([]) }
        #expect(throws: LoRAError.self) { try cpu.zeros([3, 0]) }
        #expect(throws: LoRAError.self) { try cpu.zeros([1 << 20, 1 << 20]) }
        #expect(throws: LoRAError.self) { try cpu.upload([1, 2, 3], shape: [2, 2]) }
        #expect(throws: LoRAError.self) { try cpu.zeros([6]).reshaped([4, 2]) }
        #expect(try cpu.upload([1, 2, 3, 4, 5, 6], shape: [6]).reshaped([2, 3]).shape == [2, 3])
    }

    @Test("a tensor from another backend is rejected")
    func wrongDevice() throws {
        let other = CPUBackend()
        let x = try other.zeros([2, 2])
        #expect(throws: LoRAError.self) { try cpu.fill(x, with: 1) }
        #expect(throws: LoRAError.self) { try GEMM(a: x, b: cpu.zeros([2, 2]), c: cpu.zeros([2, 2])) }
    }
}
