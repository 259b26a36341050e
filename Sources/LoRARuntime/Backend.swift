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

    /// A new tensor of the given shape, every element zero.
    func zeros(_ shape: [Int]) throws -> Tensor
    /// A new tensor whose contents are unspecified until written (a GEMM with beta = 0, a copy, a fill):
    /// saves the device a fill where every element is about to be overwritten.
    func empty(_ shape: [Int]) throws -> Tensor
    /// A new tensor holding `values` (row-major) with the given shape.
    func upload(_ values: [Float], shape: [Int]) throws -> Tensor
    /// The elements of `tensor`, row-major. Waits for queued work.
    func download(_ tensor: Tensor) throws -> [Float]
    /// Sets every element of `tensor` to `value`.
    func fill(_ tensor: Tensor, with value: Float) throws
    /// Copies all elements of `source` into `destination` (same element count).
    func copy(_ source: Tensor, to destination: Tensor) throws
    /// Copies blocks between strided places of two tensors. See `BlockCopy`.
    func blockCopy(_ op: BlockCopy) throws
    /// Waits until all queued work has finished.
    func synchronize() throws

    /// `C = alpha·op(A)·op(B) + beta·C`, batched with strides. See `GEMM`.
    func gemm(_ op: GEMM) throws
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

    /// Checks a copy's element counts.
    public func validateCopy(_ source: Tensor, _ destination: Tensor) throws {
        try requireOwned("copy", source, destination)
        guard source.count == destination.count else {
            throw LoRAError.shapeMismatch(
                "copy: source \(describe(source.shape)) and destination \(describe(destination.shape)) differ in size")
        }
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
