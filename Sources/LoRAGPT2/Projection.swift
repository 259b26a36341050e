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
    public var inFeatures: Int { weight.shape[0] }
    public var outFeatures: Int { weight.shape[1] }

    init(name: String, weight: Tensor, bias: Tensor) {
        (self.name, self.weight, self.bias) = (name, weight, bias)
    }

    /// y `[N, out]` for x `[N, in]`.
    func forward(_ x: Tensor) throws -> Tensor {
        if let lora { return try lora.forward(x) }
        let backend = weight.backend
        let y = try backend.matmul(x, weight)
        try backend.addBias(BiasAdd(bias: bias, y: y))
        return y
    }

    /// dx `[N, in]` for dy `[N, out]` of the last forward; the adapter's gradients accumulate.
    func backward(_ dy: Tensor) throws -> Tensor {
        if let lora { return try lora.backward(dy) }
        return try weight.backend.matmul(dy, weight, transposeB: true)
    }
}
