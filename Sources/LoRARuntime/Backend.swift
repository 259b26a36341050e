// The backend boundary: a small set of primitive ops that every device implements.
// Each op is described by a value (GEMM, Softmax, ...) whose throwing initializer checks every shape and
// extent once, so a backend receives only well-formed work and the two backends cannot disagree on validation.

/// A device that holds tensors and runs the primitive ops on them.
///
/// Ops never move data to the host. Work may be queued: `download` and `synchronize` wait for it.
/// Every op checks that its tensors belong to this backend and throws `LoRAError.wrongDevice` otherwise.
public protocol Backend: AnyObject, Sendable {
    /// Short name used in messages and by `LORA_DEVICE`: `cpu`, `opencl:0`.
    var name: String { get }
    /// One line for people: the device's name and driver.
    var deviceDescription: String { get }
    /// Bytes of memory tensors can use on the device, when known (the host's available memory for the CPU,
    /// the device's global memory for OpenCL): lets a caller refuse work that cannot fit before starting it.
    var memoryCapacity: Int? { get }

    /// A new tensor of the given shape and dtype (`count · dtype.size` bytes), every element zero (all bits clear).
    func zeros(_ shape: [Int], dtype: DType) throws -> Tensor
    /// A new tensor whose contents are unspecified until written (a GEMM with beta = 0, a copy, a fill):
    /// saves the device a fill where every element is about to be overwritten.
    func empty(_ shape: [Int], dtype: DType) throws -> Tensor
    /// A new float32 tensor holding `values` (row-major) with the given shape.
    func upload(_ values: [Float], shape: [Int]) throws -> Tensor
    /// A new tensor of any dtype from its raw little-endian bytes (`count · dtype.size` of them, row-major), e.g. a
    /// safetensors bf16 weight as it lies in the file.
    func upload(bytes: UnsafeRawBufferPointer, dtype: DType, shape: [Int]) throws -> Tensor
    /// The elements of a float32 tensor, row-major. Waits for queued work. Other dtypes throw
    /// `LoRAError.unsupportedDType` (read them with `downloadBytes`, or `convert` them to float32 first).
    func download(_ tensor: Tensor) throws -> [Float]
    /// Copies a tensor of any dtype's raw bytes into `bytes` (exactly `tensor.byteCount` of them). Waits for queued work.
    func downloadBytes(_ tensor: Tensor, into bytes: UnsafeMutableRawBufferPointer) throws
    /// Sets every element of `tensor` to `value`.
    func fill(_ tensor: Tensor, with value: Float) throws
    /// Copies all elements of `source` into `destination` (same element count and dtype, any dtype).
    func copy(_ source: Tensor, to destination: Tensor) throws
    /// Copies blocks between strided places of two tensors. See `BlockCopy`.
    func blockCopy(_ op: BlockCopy) throws
    /// Waits until all queued work has finished.
    func synchronize() throws

    /// Whether this device computes in host memory, so that state kept "on the host" saves no device memory
    /// (the CPU). See HostResidentMemory.swift.
    var hostMemoryIsDeviceMemory: Bool { get }
    /// A new float32 tensor of zeros in host memory that this device's ops and copies can still use (OpenCL: a
    /// `CL_MEM_ALLOC_HOST_PTR` buffer), for state the device only streams through, such as paged optimizer moments.
    func hostResidentZeros(_ shape: [Int]) throws -> Tensor
    /// Starts copying each source into its destination (same count and dtype), possibly beside the ops enqueued
    /// after this call: the copies start after every op enqueued before it, and ops enqueued after
    /// `awaitTransfer` of the result see them done. Transfers run in the order they were begun. Keep the
    /// `Transfer` until awaited.
    func beginTransfer(_ copies: [(source: Tensor, destination: Tensor)]) throws -> Transfer
    /// Makes every op enqueued after this call wait for `transfer`'s copies (the host does not wait).
    func awaitTransfer(_ transfer: Transfer) throws

    /// `C = alpha·op(A)·op(B) + beta·C`, batched with strides. See `GEMM`.
    func gemm(_ op: GEMM) throws
    /// Lays a frozen weight out once as this backend's GEMM lays out operand B, op(B) = weightᵀ when `transposed`
    /// (x·Wᵀ, W `[out, in]`), and attaches the copy to it (`Tensor.packing`); products that read the whole weight
    /// that way then skip laying it out on every call, with the same results bit for bit. Returns false, attaching
    /// nothing, where the backend gains nothing from it. See PackedWeight.swift.
    func packWeight(_ weight: Tensor, transposed: Bool) throws -> Bool
    /// Causal multi-head attention (grouped-query, optionally windowed): probabilities and context. See `Attention`.
    func attention(_ op: Attention) throws
    /// Gradient of `attention`. See `AttentionBackward`.
    func attentionBackward(_ op: AttentionBackward) throws
    /// Row softmax with optional scale and causal mask. See `Softmax`.
    func softmax(_ op: Softmax) throws
    /// Gradient of `softmax`. See `SoftmaxBackward`.
    func softmaxBackward(_ op: SoftmaxBackward) throws
    /// `y[row, :] += bias`. See `BiasAdd`.
    func addBias(_ op: BiasAdd) throws
    /// `y += alpha·x`. See `Axpy`.
    func axpy(_ op: Axpy) throws
    /// Inverted dropout with a counter-based mask. See `Dropout`.
    func dropout(_ op: Dropout) throws
    /// The LoRA low-rank path `u = x·Aᵀ; y += s·u·Bᵀ`. See `LoRAProjection`.
    func loraProject(_ op: LoRAProjection) throws
    /// The LoRA path of many adapters at once, each row with its own (BGMV/SGMV). See `MultiLoRA`.
    func multiLoRA(_ op: MultiLoRA) throws
    /// Layer normalization over the last axis. See `LayerNorm`.
    func layerNorm(_ op: LayerNorm) throws
    /// Gradient of `layerNorm`. See `LayerNormBackward`.
    func layerNormBackward(_ op: LayerNormBackward) throws
    /// GPT-2's `gelu_new` activation. See `GELU`.
    func gelu(_ op: GELU) throws
    /// Gradient of `gelu`. See `GELUBackward`.
    func geluBackward(_ op: GELUBackward) throws
    /// RMS normalization over the last axis (Llama's). See `RMSNorm`.
    func rmsNorm(_ op: RMSNorm) throws
    /// Gradient of `rmsNorm`. See `RMSNormBackward`.
    func rmsNormBackward(_ op: RMSNormBackward) throws
    /// Rotary position embedding, rotate-half layout (or its inverse, the gradient). See `RoPE`.
    func rope(_ op: RoPE) throws
    /// Llama's gated activation `silu(gate)·up`. See `SwiGLU`.
    func swiglu(_ op: SwiGLU) throws
    /// Gradient of `swiglu`. See `SwiGLUBackward`.
    func swigluBackward(_ op: SwiGLUBackward) throws
    /// Cross-entropy fused with softmax and its gradient. See `CrossEntropy`.
    func crossEntropy(_ op: CrossEntropy) throws
    /// One fused AdamW update. See `AdamW`.
    func adamW(_ op: AdamW) throws
    /// A whole-tensor sum or sum of squares. See `Reduction`.
    func reduce(_ op: Reduction) throws
    /// Rows of a table picked by ids. See `EmbeddingLookup`.
    func embedding(_ op: EmbeddingLookup) throws
    /// Gradient of `embedding` into the table. See `EmbeddingBackward`.
    func embeddingBackward(_ op: EmbeddingBackward) throws
    /// Elements converted between float dtypes (float32, bfloat16, float16). See `Convert`.
    func convert(_ op: Convert) throws
    /// `C = alpha·A·op(W) + beta·C (+ bias)` with W in NF4, dequantized as it is read. See `QuantizedGEMM`.
    func quantizedGEMM(_ op: QuantizedGEMM) throws
    /// An NF4 weight dequantized to float32 (bit-exact with the formula in NF4.swift). See `NF4Dequantize`.
    func dequantizeNF4(_ op: NF4Dequantize) throws
}

/// A validated op description. All its tensors live on `owner`, checked when it was made.
public protocol BackendOp: Sendable {
    var owner: any Backend { get }
}

extension Backend {
    /// Throws unless `op`'s tensors live on this backend (an op built for one device, run on another).
    public func requireOwned(_ op: some BackendOp) throws {
        guard op.owner === self else {
            throw LoRAError.wrongDevice("\(type(of: op)) made for \(op.owner.name) was run on \(name)")
        }
    }

    /// Throws unless every tensor lives on this backend.
    public func requireOwned(_ op: String, _ tensors: Tensor?...) throws {
        for case let t? in tensors where t.backend !== self {
            throw LoRAError.wrongDevice("\(op): a tensor on \(t.backend.name) was passed to \(name)")
        }
    }

    /// Checks an upload's element count against its shape.
    public func validateUpload(_ values: [Float], shape: [Int]) throws {
        try Tensor.validate(shape: shape)
        guard values.count == shape.reduce(1, *) else {
            throw LoRAError.shapeMismatch("upload: \(values.count) values for shape \(describe(shape))")
        }
    }

    /// Checks a bytes upload's size against its shape and dtype.
    public func validateUpload(bytes: UnsafeRawBufferPointer, dtype: DType, shape: [Int]) throws {
        try Tensor.validate(shape: shape)
        guard bytes.count == shape.reduce(1, *) * dtype.size else {
            throw LoRAError.shapeMismatch("upload: \(bytes.count) bytes for \(dtype) shape \(describe(shape)) "
                + "(\(shape.reduce(1, *) * dtype.size) expected)")
        }
    }

    /// Checks a bytes download's destination size.
    public func validateDownload(_ tensor: Tensor, into bytes: UnsafeMutableRawBufferPointer) throws {
        try requireOwned("downloadBytes", tensor)
        guard bytes.count == tensor.byteCount else {
            throw LoRAError.shapeMismatch("downloadBytes: \(bytes.count) bytes of room for \(tensor) (\(tensor.byteCount) bytes)")
        }
    }

    /// Checks a copy's element counts and dtypes.
    public func validateCopy(_ source: Tensor, _ destination: Tensor) throws {
        try requireOwned("copy", source, destination)
        guard source.count == destination.count else {
            throw LoRAError.shapeMismatch(
                "copy: source \(describe(source.shape)) and destination \(describe(destination.shape)) differ in size")
        }
        guard source.dtype == destination.dtype else {
            throw LoRAError.unsupportedDType("copy: source is \(source.dtype) but destination is \(destination.dtype) (convert between dtypes)")
        }
    }

    /// A new float32 tensor, every element zero.
    public func zeros(_ shape: [Int]) throws -> Tensor { try zeros(shape, dtype: .float32) }

    /// A new float32 tensor with unspecified contents. See `empty(_:dtype:)`.
    public func empty(_ shape: [Int]) throws -> Tensor { try empty(shape, dtype: .float32) }

    /// A new int32 tensor of ids (tokens, targets, positions) with the given shape.
    public func upload(_ ids: [Int32], shape: [Int]) throws -> Tensor {
        try ids.withUnsafeBytes { try upload(bytes: $0, dtype: .int32, shape: shape) }
    }

    /// The raw bytes of a tensor of any dtype (little-endian, row-major). Waits for queued work.
    public func downloadBytes(_ tensor: Tensor) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: tensor.byteCount)
        try bytes.withUnsafeMutableBytes { try downloadBytes(tensor, into: $0) }
        return bytes
    }

    /// The elements of an int32 tensor. Waits for queued work.
    public func downloadInt32(_ tensor: Tensor) throws -> [Int32] {
        try tensor.requireDType([.int32], op: "downloadInt32", operand: "the tensor")
        var ids = [Int32](repeating: 0, count: tensor.count)
        try ids.withUnsafeMutableBytes { try downloadBytes(tensor, into: $0) }
        return ids
    }

    /// `source` converted to `dtype` in a new tensor of the same shape (float dtypes only). See `Convert`.
    public func converted(_ source: Tensor, to dtype: DType) throws -> Tensor {
        let destination = try empty(source.shape, dtype: dtype)
        try convert(Convert(source: source, destination: destination))
        return destination
    }

    /// `op(A)·op(B)` for matrices or batches of matrices, in a new tensor. Shapes as in `GEMM(a:b:c:)`.
    public func matmul(_ a: Tensor, _ b: Tensor, transposeA: Bool = false, transposeB: Bool = false,
                       alpha: Float = 1) throws -> Tensor {
        let shape = try GEMM.resultShape(a: a.shape, b: b.shape, transposeA: transposeA, transposeB: transposeB)
        let c = try empty(shape)
        try gemm(GEMM(a: a, b: b, c: c, transposeA: transposeA, transposeB: transposeB, alpha: alpha))
        return c
    }
}
