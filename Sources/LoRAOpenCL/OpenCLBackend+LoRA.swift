// The OpenCL LoRA low-rank path, two ways. The fused kernel (Kernels/lora.cl): a work-group per row of x
// computes u = x·Aᵀ into local memory, then y += s·u·Bᵀ, so u never makes a round trip through global memory
// between the two halves. Or two GEMMs through the packed GEMM kernel. Local memory and barriers are slow on
// CPU devices (PoCL: the fused kernel ran at ~2.5 GFLOP/s where the GEMMs reach 50-90), so CPU devices and
// ranks beyond the fused kernel's local memory take the GEMMs; GPUs take the fused kernel.
// Tunables of the kernel are passed with -D: LORA_MAX_RANK from the constant below, LORA_WG from lora.WG.
import LoRARuntime

/// How an OpenCL backend runs the LoRA path.
public enum LoRAPath: String, Sendable, CaseIterable {
    /// Kernels/lora.cl, one launch.
    case fused
    /// Two GEMMs.
    case gemm
}

extension OpenCLBackend {
    /// Largest rank the fused kernel is built for (its local-memory array; `-D LORA_MAX_RANK`).
    static let fusedLoRAMaxRank = 256

    public func loraProject(_ op: LoRAProjection) throws {
        try loraProject(op, path: device.kind == .cpu ? .gemm : .fused)
    }

    /// Runs `op` along a given path (tests compare them); ranks beyond the fused kernel always take the GEMMs.
    public func loraProject(_ op: LoRAProjection, path: LoRAPath) throws {
        try requireOwned(op)
        guard path == .fused, op.rank <= Self.fusedLoRAMaxRank else { return try loraProjectWithGEMM(op) }
        // Work-items per row: lora.WG (KernelParameters.swift; 64 unless tuned), within the kernel's limit.
        let wg = kernelParameters["lora.WG"]
        let options = "-D LORA_MAX_RANK=\(Self.fusedLoRAMaxRank) -D LORA_WG=\(wg)"
        let k = try kernel("lora_forward", file: "lora", options: options)
        let group = min(wg, try maxWorkGroupSize(k))
        // An unused u slot still needs a valid buffer; y is never written through it (write_u = 0).
        try launch(k, global: [op.rows * group], local: [group], [
            .tensor(op.x), .tensor(op.a), .tensor(op.b), .tensor(op.y), .tensor(op.u ?? op.y),
            .int(op.u == nil ? 0 : 1), .int(op.inFeatures), .int(op.outFeatures), .int(op.rank), .float(op.scale),
        ])
    }

    /// The same path as two GEMMs.
    private func loraProjectWithGEMM(_ op: LoRAProjection) throws {
        let u = try op.u ?? empty([op.rows, op.rank])
        let (n, r) = (op.rows, op.rank)
        try gemm(GEMM(m: n, n: r, k: op.inFeatures, a: GEMMOperand(op.x, ld: op.inFeatures),
                      b: GEMMOperand(op.a, ld: op.inFeatures), transposeB: true, c: GEMMOperand(u, ld: r)))
        try gemm(GEMM(m: n, n: op.outFeatures, k: r, alpha: op.scale, a: GEMMOperand(u, ld: r),
                      b: GEMMOperand(op.b, ld: r), transposeB: true, beta: 1, c: GEMMOperand(op.y, ld: op.outFeatures)))
    }
}
