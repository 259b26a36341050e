// The frozen base of QLoRA: a linear layer whose weight is stored as 4-bit NormalFloat and multiplied without
// ever being widened in full (the quantized GEMM dequantizes tile by tile as it reads).
import LoRARuntime

/// A weight stored as 4-bit NormalFloat, `[out, in]` like bitsandbytes' `Linear4bit` (QLoRA's frozen base). It
/// stays packed on the device: forward and the input gradient dequantize as they read, so no float copy of W
/// ever exists. An adapter cannot be merged into it (rounding to 4 bits would lose the delta): `dequantized`
/// gives a dense layer to merge into.
public final class NF4Linear: FrozenLinear {
    public let weight: NF4Weight
    public let bias: Tensor?
    /// The dtype of the weight before quantization (bitsandbytes' quant_state `dtype`): what dequantizing gives back.
    public var originalDType: DType { weight.dtype }
    public var inFeatures: Int { weight.columns }
    public var outFeatures: Int { weight.rows }
    public var backend: any Backend { weight.backend }

    public init(weight: NF4Weight, bias: Tensor? = nil) throws {
        if let bias, bias.shape != [weight.rows] {
            throw LoRAError.shapeMismatch("nf4 linear layer: bias is \(describe(bias.shape)) but the layer has \(weight.rows) outputs")
        }
        try weight.backend.requireOwned("nf4 linear layer", bias)
        (self.weight, self.bias) = (weight, bias)
    }

    /// `y = x·Wᵀ (+ bias)` with W's elements in float32 (the compute dtype), not rounded to a bfloat16/float16
    /// weight's dtype: bitsandbytes 0.50's `Linear4bit` forward (`gemm_4bit`) dequantizes straight to the input's dtype.
    public func forward(_ x: Tensor, into y: Tensor) throws {
        try backend.quantizedGEMM(QuantizedGEMM(a: x, weight: weight, c: y, transposeW: true, bias: bias,
                                                elementDType: .float32))
    }

    /// `dx = dy·W` with W's elements rounded to its dtype: bitsandbytes 0.50's `MatMul4Bit.backward` multiplies by
    /// `dequantize_4bit(W).to(dy.dtype)`. (For a float32 weight both directions are the same.)
    public func inputGradient(_ dy: Tensor, into dx: Tensor, accumulate: Bool) throws {
        try backend.quantizedGEMM(QuantizedGEMM(a: dy, weight: weight, c: dx, transposeW: false, beta: accumulate ? 1 : 0,
                                                elementDType: weight.dtype))
    }

    public func addLowRank(a: Tensor, b: Tensor, scale: Float) throws {
        throw LoRAError.invalidState("an adapter cannot be merged into a 4-bit weight (the delta would round away); "
            + "merge into its dequantized copy instead")
    }

    /// The weight dequantized into a dense layer stored as `dtype` (bitsandbytes' `dequantize_4bit`: float32 math,
    /// each element rounded to the weight's own dtype, then stored as `dtype`), `[out, in]` or,
    /// for a family that keeps `[in, out]` (GPT-2's Conv1D), transposed on the host.
    public func dequantized(dtype: DType, layout: DenseLinear.Layout = .outIn) throws -> DenseLinear {
        var values = try backend.empty([weight.rows, weight.columns])
        try backend.dequantizeNF4(NF4Dequantize(weight: weight, destination: values))
        if layout == .inOut {
            let (rows, columns) = (weight.rows, weight.columns)
            let host = try backend.download(values)
            var transposed = [Float](repeating: 0, count: host.count)
            for r in 0..<rows { for c in 0..<columns { transposed[c * rows + r] = host[r * columns + c] } }
            values = try backend.upload(transposed, shape: [columns, rows])
        }
        let stored = dtype == .float32 ? values : try backend.converted(values, to: dtype)
        return try DenseLinear(weight: stored, bias: bias, layout: layout)
    }
}
