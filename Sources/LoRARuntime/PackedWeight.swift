// Frozen weights laid out once for a backend's GEMM. Every product x·Wᵀ in a forward reads W as operand B, and the
// CPU GEMM copies B into NR-wide k-major panels first (CPUBackend+GEMMPacking.swift), a transposing copy as costly
// as a decode step's product itself; the few-row kernel (CPUBackend+GEMMFewRows.swift) skips the copy but reads 8
// rows of W side by side, more slowly than memory streams. Packed once (`Backend.packWeight`), a generation step
// streams each weight's panels in order and a prefill skips the copy. The packed copy is the panels the GEMM would
// make, so results are the same bit for bit.
//
// Cost: a second copy of each packed weight (float32 weights only), kept as long as the weight is packed; models pack
// for generation (`LanguageModel.packWeightsForInference`), not for training. OpenCL devices pack nothing: their
// kernels stage tiles in local memory, and the weights already lie where the GPU reads them.

/// A weight's copy laid out for its backend's GEMM, attached to the weight (`Tensor.packing`).
public struct WeightPacking: Sendable {
    /// Whether the copy serves products that read the weight transposed (op(B) = Wᵀ, as x·Wᵀ does).
    public let transposed: Bool
    /// The copy, in the backend's own layout (CPU: float32 NR-wide panels of op(B), block of k after block of k).
    public let panels: Tensor

    public init(transposed: Bool, panels: Tensor) {
        (self.transposed, self.panels) = (transposed, panels)
    }
}
