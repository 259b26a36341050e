// One of GPT-2's linear layers (a Conv1D: weight [in, out], y = x·W + b), frozen, optionally with a LoRA adapter.
import LoRANN
import LoRARuntime

/// A named GPT-2 linear layer. Without an adapter it computes `x·W + b` and, backward, only `dx`.
public final class Projection {
    /// PEFT's module name, e.g. `transformer.h.0.attn.c_attn`.
    public let name: String
    /// `[in, out]`, frozen.
    public let weight: Tensor
    /// `[out]`, frozen.
    public let bias: Tensor
    /// The adapter, when this module is a LoRA target.
    public internal(set) var lora: LoRALinear?
    /// Gradients of the weight and bias, in full fine-tuning (nil otherwise: frozen).
    public internal(set) var gradients: (weight: Tensor, bias: Tensor)?
    private var savedInput: Tensor?
    /// A row of ones `[1, N]`: the bias gradient is onesᵀ·dy. Kept between steps (one upload, not one per backward).
    private var ones: Tensor?
    public var inFeatures: Int { weight.shape[0] }
    public var outFeatures: Int { weight.shape[1] }

    init(name: String, weight: Tensor, bias: Tensor) {
        (self.name, self.weight, self.bias) = (name, weight, bias)
    }

    /// y `[N, out]` for x `[N, in]`.
    func forward(_ x: Tensor) throws -> Tensor {
        if let lora { return try lora.forward(x) }
        let backend = weight.backend
        if gradients != nil { savedInput = x }
        let y = try backend.empty([x.shape[0], outFeatures])
        try backend.gemm(GEMM(a: x, b: weight, c: y, bias: bias))
        return y
    }

    /// dx `[N, in]` for dy `[N, out]` of the last forward; the adapter's (or, in full fine-tuning, the weight's
    /// and bias's) gradients accumulate.
    func backward(_ dy: Tensor) throws -> Tensor {
        if let lora { return try lora.backward(dy) }
        try accumulateWeightGradients(dy)
        return try weight.backend.matmul(dy, weight, transposeB: true)
    }

    /// The gradients `backward` accumulates, without dx: for a layer whose input came from frozen weights alone.
    func accumulateGradients(_ dy: Tensor) throws {
        if let lora { return try lora.accumulateGradients(dy) }
        try accumulateWeightGradients(dy)
    }

    /// In full fine-tuning: `dW += xᵀ·dy`, `db += Σ_rows dy`.
    private func accumulateWeightGradients(_ dy: Tensor) throws {
        guard let gradients, let x = savedInput else { return }
        let backend = weight.backend
        try backend.gemm(GEMM(a: x, b: dy, c: gradients.weight, transposeA: true, beta: 1))
        let rows = dy.shape[0]
        if ones?.count != rows { ones = try backend.upload(Array(repeating: 1, count: rows), shape: [1, rows]) }
        try backend.gemm(GEMM(a: ones!, b: dy, c: gradients.bias.reshaped([1, outFeatures]), beta: 1))
    }
}
