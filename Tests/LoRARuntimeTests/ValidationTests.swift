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

    @Test("attention operands are checked: extents, shapes, outputs that overlap")
    func attentionOperands() throws {
        let shape = try AttentionShape(sequences: 2, heads: 3, headDim: 4, queries: 5, keys: 5, scale: 0.5)
        let qkv = try cpu.zeros([10, 36]), context = try cpu.zeros([10, 12]), p = try cpu.zeros([2, 3, 5, 5])
        func part(_ i: Int) -> HeadOperand { HeadOperand(qkv, offset: 12 * i, ld: 36, sequenceStride: 180, headStride: 4) }
        let good = HeadOperand(context, ld: 12, sequenceStride: 60, headStride: 4)
        _ = try Attention(shape, query: part(0), key: part(1), value: part(2), probabilities: p, context: good)
        // Heads 2 apart overlap, and so do sequences 30 apart (a sequence spans 5 rows of 12).
        #expect(throws: LoRAError.self) {
            try Attention(shape, query: part(0), key: part(1), value: part(2), probabilities: p,
                          context: HeadOperand(context, ld: 12, sequenceStride: 60, headStride: 2))
        }
        #expect(throws: LoRAError.self) {
            try Attention(shape, query: part(0), key: part(1), value: part(2), probabilities: p,
                          context: HeadOperand(context, ld: 12, sequenceStride: 30, headStride: 4))
        }
        #expect(throws: LoRAError.self) {  // reads past the end of qkv
            try Attention(shape, query: HeadOperand(qkv, offset: 30, ld: 36, sequenceStride: 180, headStride: 4),
                          key: part(1), value: part(2), probabilities: p, context: good)
        }
        #expect(throws: LoRAError.self) {  // probabilities of the wrong shape
            try Attention(shape, query: part(0), key: part(1), value: part(2), probabilities: cpu.zeros([2, 3, 5, 6]), context: good)
        }
        #expect(throws: LoRAError.self) { try AttentionShape(sequences: 1, heads: 1, headDim: 4, queries: 6, keys: 5, scale: 1) }
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

    @Test("float32-only ops refuse a 16-bit or int32 operand with unsupportedDType naming the op and the operand",
          arguments: [DType.bfloat16, .float16, .int32])
    func float32OnlyOps(dtype: DType) throws {
        let cpu = self.cpu
        /// Builds an op once with every operand float32 (it must be accepted), then once per operand with that one
        /// in `dtype`: each must throw `unsupportedDType` starting "<op>: <operand> [shape] is <dtype>".
        func check(_ op: String, _ build: (_ make: (String, [Int]) throws -> Tensor) throws -> Void) throws {
            var names: [String] = []
            try build { name, shape in names.append(name); return try cpu.zeros(shape) }
            #expect(!names.isEmpty)
            for operand in names {
                var message: String?
                do {
                    try build { name, shape in try cpu.zeros(shape, dtype: name == operand ? dtype : .float32) }
                } catch let LoRAError.unsupportedDType(text) { message = text }
                #expect(message?.hasPrefix("\(op): \(operand) [") == true && message?.contains("is \(dtype)") == true,
                        "\(op) with \(operand) \(dtype): \(message ?? "accepted")")
            }
        }
        try check("softmax") { t in _ = try Softmax(x: t("x", [2, 3]), y: t("y", [2, 3]), causal: true) }
        try check("softmaxBackward") { t in _ = try SoftmaxBackward(y: t("y", [2, 3]), dy: t("dy", [2, 3]), dx: t("dx", [2, 3])) }
        try check("layerNorm") { t in
            _ = try LayerNorm(x: t("x", [2, 4]), gamma: t("gamma", [4]), beta: t("beta", [4]), y: t("y", [2, 4]),
                              mean: t("mean", [2]), rstd: t("rstd", [2]))
        }
        try check("layerNormBackward") { t in
            _ = try LayerNormBackward(x: t("x", [2, 4]), gamma: t("gamma", [4]), mean: t("mean", [2]), rstd: t("rstd", [2]),
                                      dy: t("dy", [2, 4]), dx: t("dx", [2, 4]), dgamma: t("dgamma", [4]), dbeta: t("dbeta", [4]))
        }
        try check("rmsNorm") { t in
            _ = try RMSNorm(x: t("x", [2, 4]), gamma: t("gamma", [4]), y: t("y", [2, 4]), rstd: t("rstd", [2]), epsilon: 1e-6)
        }
        try check("rmsNormBackward") { t in
            _ = try RMSNormBackward(x: t("x", [2, 4]), gamma: t("gamma", [4]), rstd: t("rstd", [2]), dy: t("dy", [2, 4]),
                                    dx: t("dx", [2, 4]), dgamma: t("dgamma", [4]))
        }
        try check("rope") { t in
            _ = try RoPE(input: t("input", [4, 8]), output: t("output", [4, 8]), heads: 2, headDim: 4, sequenceLength: 2,
                         start: 0, cos: t("cos", [3, 2]), sin: t("sin", [3, 2]))
        }
        try check("swiglu") { t in _ = try SwiGLU(gate: t("gate", [2, 5]), up: t("up", [2, 5]), y: t("y", [2, 5])) }
        try check("swigluBackward") { t in
            _ = try SwiGLUBackward(gate: t("gate", [2, 5]), up: t("up", [2, 5]), dy: t("dy", [2, 5]), dGate: t("dGate", [2, 5]),
                                   dUp: t("dUp", [2, 5]))
        }
        try check("gelu") { t in _ = try GELU(x: t("x", [7]), y: t("y", [7])) }
        try check("geluBackward") { t in _ = try GELUBackward(x: t("x", [7]), dy: t("dy", [7]), dx: t("dx", [7])) }
        let shape = try AttentionShape(sequences: 1, heads: 2, kvHeads: 1, headDim: 4, queries: 3, keys: 5, scale: 0.5)
        func heads(_ t: Tensor, _ count: Int) -> HeadOperand { HeadOperand(t, ld: 4 * count, sequenceStride: 0, headStride: 4) }
        try check("attention") { t in
            _ = try Attention(shape, query: heads(t("query", [3, 8]), 2), key: heads(t("key", [5, 4]), 1),
                              value: heads(t("value", [5, 4]), 1), probabilities: t("probabilities", [1, 2, 3, 5]),
                              context: heads(t("context", [3, 8]), 2))
        }
        try check("attentionBackward") { t in
            _ = try AttentionBackward(shape, query: heads(t("query", [3, 8]), 2), key: heads(t("key", [5, 4]), 1),
                                      value: heads(t("value", [5, 4]), 1), probabilities: t("probabilities", [1, 2, 3, 5]),
                                      dContext: heads(t("dContext", [3, 8]), 2), dQuery: heads(t("dQuery", [3, 8]), 2),
                                      dKey: heads(t("dKey", [5, 4]), 1), dValue: heads(t("dValue", [5, 4]), 1))
        }
    }

    @Test("a tensor from another backend is rejected")
    func wrongDevice() throws {
        let other = CPUBackend()
        let x = try other.zeros([2, 2])
        #expect(throws: LoRAError.self) { try cpu.fill(x, with: 1) }
        #expect(throws: LoRAError.self) { try GEMM(a: x, b: cpu.zeros([2, 2]), c: cpu.zeros([2, 2])) }
    }
}
