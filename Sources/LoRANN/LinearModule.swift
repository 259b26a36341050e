// A model's named linear layer (PEFT's module name, e.g. `model.layers.0.self_attn.q_proj`): a frozen base,
// optionally with a LoRA adapter, or, in full fine-tuning, a dense weight that gets its own gradients, or, for
// serving, a bank of unmerged adapters from which each row of a batch picks its own (AdapterBank.swift).
// Models hold these for every linear an adapter can target; adapter matching, PEFT files, merging and the
// trainable-parameter list work on them without knowing the model.
import LoRARuntime

/// A named linear layer. Without an adapter it computes `x·Wᵀ + b` and, backward, only `dx`.
public final class LinearModule {
    /// PEFT's module name, e.g. `transformer.h.0.attn.c_attn` or `model.layers.0.self_attn.q_proj`.
    public let name: String
    /// The frozen layer.
    public private(set) var base: any FrozenLinear
    /// The adapter, when this module is a LoRA target.
    public var lora: LoRALinear?
    /// Adapters by slot, each row choosing one through `adapterRows` (inference only). Never beside `lora`.
    public var adapters: AdapterBank?
    /// Which slot of `adapters` each row of the next forwards uses (the model sets it for a batch); nil: none.
    public var adapterRows: AdapterRows?
    /// Whether the last forward added rows' adapters from the bank, which backward cannot follow.
    private var bankInLastForward = false
    /// Gradients of the weight and bias in full fine-tuning (nil otherwise: frozen).
    public private(set) var gradients: (weight: Tensor, bias: Tensor?)?
    private var savedInput: Tensor?
    /// A row of ones `[1, N]`: the bias gradient is onesᵀ·dy. Kept between steps (one upload, not one per backward).
    private var ones: Tensor?
    public var inFeatures: Int { base.inFeatures }
    public var outFeatures: Int { base.outFeatures }
    var backend: any Backend { base.backend }

    /// How a dense weight of this module is laid out in its family's files (GPT-2's Conv1D: `[in, out]`), which a
    /// dequantized 4-bit base takes.
    public let denseLayout: DenseLinear.Layout

    public init(name: String, base: any FrozenLinear, denseLayout: DenseLinear.Layout = .outIn) {
        (self.name, self.base, self.denseLayout) = (name, base, (base as? DenseLinear)?.layout ?? denseLayout)
    }

    /// A dense weight, `[out, in]` or `[in, out]` as `layout` says.
    public convenience init(name: String, weight: Tensor, bias: Tensor?, layout: DenseLinear.Layout) throws {
        self.init(name: name, base: try DenseLinear(weight: weight, bias: bias, layout: layout))
    }

    /// The dense weight, for full fine-tuning and saving (nil for other storage).
    public var dense: DenseLinear? { base as? DenseLinear }

    /// The 4-bit weight, when the base is quantized.
    public var nf4: NF4Linear? { base as? NF4Linear }

    /// Replaces a 4-bit base by its dequantized copy stored as `dtype` (merging an adapter needs a dense weight).
    /// Must come before any adapter is put on the module.
    public func dequantizeBase(dtype: DType) throws {
        guard let nf4 else { return }
        guard lora == nil else { throw LoRAError.invalidState("\(name): dequantize the base before adding an adapter") }
        base = try nf4.dequantized(dtype: dtype, layout: denseLayout)
    }

    /// Gives the weight and bias gradients (full fine-tuning); the base must be dense.
    public func enableGradients() throws {
        guard let dense else { throw LoRAError.invalidState("\(name): full fine-tuning needs a dense weight, not \(type(of: base))") }
        gradients = (try backend.zeros(dense.weight.shape), try dense.bias.map { try backend.zeros($0.shape) })
    }

    /// y `[N, out]` for x `[N, in]`.
    /// With a bank and `adapterRows`, row i gets slot `adapterRows[i]`'s update added: `y[i] += s_a·(x[i]·A_aᵀ)·B_aᵀ`.
    public func forward(_ x: Tensor) throws -> Tensor {
        bankInLastForward = false
        if let lora {
            guard adapters == nil || adapterRows == nil else {
                throw LoRAError.invalidState("\(name): a LoRA adapter and an adapter bank cannot both apply")
            }
            return try lora.forward(x)
        }
        if gradients != nil { savedInput = x }
        let y = try backend.empty([x.shape[0], outFeatures])
        try base.forward(x, into: y)
        if let adapters, let adapterRows {
            try adapters.apply(x, into: y, rows: adapterRows)
            bankInLastForward = true
        }
        return y
    }

    /// Drops what the last forward saved for backward (the input in full fine-tuning, the adapter's saved tensors):
    /// gradient checkpointing frees a block this way and recomputes its forward before the block's backward.
    public func releaseSavedActivations() {
        savedInput = nil
        lora?.releaseSavedActivations()
    }

    /// dx `[N, in]` for dy `[N, out]` of the last forward; the adapter's (or, in full fine-tuning, the weight's
    /// and bias's) gradients accumulate.
    public func backward(_ dy: Tensor) throws -> Tensor {
        let dx = try backend.empty([dy.shape[0], inFeatures])
        try backward(dy, into: dx, accumulate: false)
        return dx
    }

    /// `backward` writing dx into `dx`, or adding it there with `accumulate` (an input that feeds several modules).
    public func backward(_ dy: Tensor, into dx: Tensor, accumulate: Bool) throws {
        try requireNoBank()
        if let lora { return try lora.backward(dy, into: dx, accumulate: accumulate) }
        try accumulateWeightGradients(dy)
        try base.inputGradient(dy, into: dx, accumulate: accumulate)
    }

    /// The gradients `backward` accumulates, without dx: for a layer whose input came from frozen weights alone.
    public func accumulateGradients(_ dy: Tensor) throws {
        try requireNoBank()
        if let lora { return try lora.accumulateGradients(dy) }
        try accumulateWeightGradients(dy)
    }

    /// The bank serves inference: its adapters have no gradients, and dx would miss their part.
    private func requireNoBank() throws {
        guard !bankInLastForward else {
            throw LoRAError.invalidState("\(name): backward through an adapter bank (banks serve inference; train one adapter "
                + "at a time with a LoRA layer)")
        }
    }

    /// In full fine-tuning: `dW += xᵀ·dy` (`[in, out]` layout) or `dyᵀ·x` (`[out, in]`), `db += Σ_rows dy`.
    private func accumulateWeightGradients(_ dy: Tensor) throws {
        guard let gradients, let x = savedInput, let dense else { return }
        switch dense.layout {
        case .inOut: try backend.gemm(GEMM(a: x, b: dy, c: gradients.weight, transposeA: true, beta: 1))
        case .outIn: try backend.gemm(GEMM(a: dy, b: x, c: gradients.weight, transposeA: true, beta: 1))
        }
        guard let bias = gradients.bias else { return }
        let rows = dy.shape[0]
        if ones?.count != rows { ones = try backend.upload(Array(repeating: 1, count: rows), shape: [1, rows]) }
        try backend.gemm(GEMM(a: ones!, b: dy, c: bias.reshaped([1, outFeatures]), beta: 1))
    }
}
