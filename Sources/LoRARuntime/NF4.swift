// NF4: a frozen weight stored as bitsandbytes' 4-bit NormalFloat (QLoRA), kept packed on the device, and the ops
// that read it: a GEMM that dequantizes as it loads, and a full dequantization (merging, checks).
//
// Layout (bitsandbytes' `quantize_4bit`, quant_type "nf4"): the weight `[rows, columns]` is flattened row-major
// and cut into blocks of `blocksize` consecutive elements, so a block may span rows and the last one may be short.
// Element e is `map[q] · absmax[e / blocksize]` in float32, where q is e's 4-bit code: byte e/2 holds element
// 2i in its high nibble and 2i+1 in its low nibble (an odd count leaves the last low nibble unused).
// With double quantization each block's absmax is itself an 8-bit code c, read as
// `nestedMap[c] · nestedAbsmax[block / nestedBlocksize] + offset` in float32 (the multiply rounded, then the add).
// The maps come from the file (16 and 256 float32 values), never from constants here.
// A weight quantized from a bfloat16 or float16 tensor records that `dtype` (bitsandbytes' quant_state `dtype`), and
// bitsandbytes' `dequantize_4bit` returns that dtype: the float32 product above rounded to nearest even (the
// absmax, double quantization's included, stays float32; only the final element is rounded). The ops below round
// each element so (LoRARuntime's `Convert` rules) and widen it back exactly before using it, unless a GEMM asks
// for float32 elements (`QuantizedGEMM.elementDType`).

/// A 4-bit NormalFloat weight `[rows, columns]` on one backend.
public struct NF4Weight: Sendable {
    /// How each block's absmax is stored.
    public enum Absmax: Sendable {
        /// float32 `[blockCount]`.
        case float32(Tensor)
        /// Double quantization: uint8 codes `[blockCount]` into `map` (float32 `[256]`), scaled per group of
        /// `blocksize` codes by `scales` (float32 `[ceil(blockCount / blocksize)]`), plus `offset`.
        case doubleQuantized(codes: Tensor, map: Tensor, scales: Tensor, offset: Float, blocksize: Int)
    }

    /// Logical shape `[rows, columns]`: `[out, in]` for a linear layer, as `torch.nn.Linear` stores it.
    public let rows: Int, columns: Int
    /// Elements per block (a power of two, 32...4096 in files bitsandbytes writes).
    public let blocksize: Int
    /// uint8 `[(rows·columns + 1) / 2]`: two codes per byte, the first element in the high nibble.
    public let codes: Tensor
    /// float32 `[16]`: the code book (`quant_map`).
    public let map: Tensor
    public let absmax: Absmax
    /// The dtype bitsandbytes dequantizes to (quant_state `dtype`: the source weight's): float32, bfloat16 or
    /// float16. Dequantized elements are rounded to it.
    public let dtype: DType

    public var backend: any Backend { codes.backend }
    public var count: Int { rows * columns }
    public var blockCount: Int { (count + blocksize - 1) / blocksize }

    /// Device bytes of the packed weight and its statistics (codes, absmax, maps).
    public var byteCount: Int {
        switch absmax {
        case .float32(let a): codes.byteCount + map.byteCount + a.byteCount
        case .doubleQuantized(let c, let m, let s, _, _): codes.byteCount + map.byteCount + c.byteCount + m.byteCount + s.byteCount
        }
    }

    /// Checks every tensor's dtype, size and backend against the shape and block sizes, and that `dtype` is a float
    /// type.
    public init(rows: Int, columns: Int, blocksize: Int, codes: Tensor, map: Tensor, absmax: Absmax,
                dtype: DType = .float32) throws {
        guard rows >= 1, columns >= 1 else {
            throw LoRAError.shapeMismatch("nf4 weight: shape [\(rows), \(columns)] must be positive")
        }
        guard blocksize >= 1, blocksize & (blocksize - 1) == 0 else {
            throw LoRAError.invalidArgument("nf4 weight: blocksize \(blocksize) is not a power of two")
        }
        guard DType.floatingPoint.contains(dtype) else {
            throw LoRAError.unsupportedDType("nf4 weight: dequantizes to float32, bfloat16 or float16, not \(dtype)")
        }
        (self.rows, self.columns, self.blocksize, self.codes, self.map, self.absmax, self.dtype) =
            (rows, columns, blocksize, codes, map, absmax, dtype)
        let backend = codes.backend
        func check(_ name: String, _ t: Tensor, _ dtype: DType, _ count: Int) throws {
            try backend.requireOwned("nf4 weight", t)
            try t.requireDType([dtype], op: "nf4 weight", operand: name)
            guard t.count == count else {
                throw LoRAError.shapeMismatch("nf4 weight [\(rows), \(columns)]: \(name) has \(t.count) elements, expected \(count)")
            }
        }
        try check("codes", codes, .uint8, (rows * columns + 1) / 2)
        try check("map", map, .float32, 16)
        switch absmax {
        case .float32(let a): try check("absmax", a, .float32, blockCount)
        case .doubleQuantized(let c, let m, let s, let offset, let nested):
            guard nested >= 1, offset.isFinite else {
                throw LoRAError.invalidArgument("nf4 weight: nested blocksize \(nested) / offset \(offset) invalid")
            }
            try check("absmax codes", c, .uint8, blockCount)
            try check("nested map", m, .float32, 256)
            try check("nested absmax", s, .float32, (blockCount + nested - 1) / nested)
        }
    }
}

/// `C = alpha·A·op(W) + beta·C (+ bias)` with W in NF4, dequantized as it is read (no float copy of W is kept).
///
/// A float32 `[m, k]` (any shape whose last axis is k), C float32 `[m, n]` (same leading shape), bias float32 `[n]`.
/// `transposeW`: op(W) = Wᵀ with W `[n, k]` (a linear layer's forward, `y = x·Wᵀ`); otherwise W is `[k, n]` (its
/// input gradient, `dx = dy·W`). Math in float32; each W element is exactly `NF4Weight`'s formula, rounded to
/// `elementDType` and widened back.
///
/// `elementDType` (float32, bfloat16 or float16; nil: the weight's `dtype`): bitsandbytes 0.50 differs by direction
/// for a weight whose quant_state dtype is not the compute dtype: `Linear4bit`'s forward (`gemm_4bit`) dequantizes
/// straight to the input's dtype (float32 elements), while `MatMul4Bit.backward` multiplies by
/// `dequantize_4bit(W).to(dy.dtype)` (elements rounded to the weight's dtype). Callers say which they reproduce.
public struct QuantizedGEMM: BackendOp {
    public var owner: any Backend { c.backend }
    public let a: Tensor, weight: NF4Weight, c: Tensor
    public let transposeW: Bool
    /// The dtype each dequantized W element is rounded to before it is used (float32: not rounded).
    public let elementDType: DType
    public let alpha: Float, beta: Float
    public let bias: Tensor?
    public let m: Int, n: Int, k: Int

    public init(a: Tensor, weight: NF4Weight, c: Tensor, transposeW: Bool, alpha: Float = 1, beta: Float = 0,
                bias: Tensor? = nil, elementDType: DType? = nil) throws {
        try c.backend.requireOwned("quantized gemm", a, c, bias, weight.codes)
        try requireFloat32("quantized gemm", ("A", a), ("C", c), ("bias", bias))
        (k, n) = transposeW ? (weight.columns, weight.rows) : (weight.rows, weight.columns)
        guard a.shape.last == k, a.count % k == 0 else {
            throw LoRAError.shapeMismatch("quantized gemm: A is \(describe(a.shape)) but W gives k = \(k)")
        }
        m = a.count / k
        guard c.shape.last == n, c.count == m * n, Array(c.shape.dropLast()) == Array(a.shape.dropLast()) else {
            throw LoRAError.shapeMismatch("quantized gemm: C is \(describe(c.shape)), expected \(describe(Array(a.shape.dropLast()) + [n]))")
        }
        if let bias, bias.shape != [n] {
            throw LoRAError.shapeMismatch("quantized gemm: bias is \(describe(bias.shape)), expected [\(n)]")
        }
        guard alpha.isFinite, beta.isFinite else {
            throw LoRAError.invalidArgument("quantized gemm: alpha=\(alpha) beta=\(beta) must be finite")
        }
        let elements = elementDType ?? weight.dtype
        guard DType.floatingPoint.contains(elements) else {
            throw LoRAError.unsupportedDType("quantized gemm: W's elements round to float32, bfloat16 or float16, not \(elements)")
        }
        (self.a, self.weight, self.c, self.transposeW, self.alpha, self.beta, self.bias, self.elementDType) =
            (a, weight, c, transposeW, alpha, beta, bias, elements)
    }
}

/// `destination = W` dequantized as bitsandbytes' `dequantize_4bit`: each element rounded to the weight's `dtype`,
/// stored widened in float32 `[rows, columns]` (any shape with that many elements).
public struct NF4Dequantize: BackendOp {
    public var owner: any Backend { destination.backend }
    public let weight: NF4Weight, destination: Tensor

    public init(weight: NF4Weight, destination: Tensor) throws {
        try destination.backend.requireOwned("nf4 dequantize", weight.codes, destination)
        try requireFloat32("nf4 dequantize", ("destination", destination))
        guard destination.count == weight.count else {
            throw LoRAError.shapeMismatch("nf4 dequantize: destination \(describe(destination.shape)) for a [\(weight.rows), \(weight.columns)] weight")
        }
        (self.weight, self.destination) = (weight, destination)
    }
}
