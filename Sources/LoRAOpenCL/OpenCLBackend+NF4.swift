// OpenCL NF4: Kernels/nf4.cl's GEMM, which dequantizes W tile by tile in local memory (no float copy of W), and
// its full dequantization. One program per (transposeW, blocksize, absmax form, element rounding, tiling). Layout: NF4.swift.
// Two GEMM kernels: work-group tiles with barriers for GPUs, one-item strips for CPU devices (on PoCL the tiled
// kernel ran at ~5 GFLOP/s where the float GEMM runs at ~80); the device kind picks, tests run both.
import LoRARuntime

/// Which nf4.cl kernel runs a quantized GEMM.
public enum NF4GEMMKernel: String, Sendable, CaseIterable {
    /// nf4_gemm: TM×TN work-group tiles, A and the dequantized W tile in local memory (GPUs).
    case tiles
    /// nf4_gemm_strips: one work-item per 32 columns and row range, a KC×32 dequantized panel (CPU devices).
    case strips
}

extension OpenCLBackend {
    /// nf4_gemm's work-group tile of C (TM×TN), per-item tile (RM×RN) and terms per local step (TK), by device kind.
    /// A GPU gets 64×64 tiles of 256 work-items with 4×4 each (the classic local-memory SGEMM shape). On a CPU
    /// device (PoCL) a work-group runs as loops over its items, vectorized along dimension 0.
    struct NF4Tiling {
        let tm: Int, tn: Int, tk: Int, rm: Int, rn: Int

        init(kind: OpenCLDeviceKind) {
            if kind == .cpu {
                (tm, tn, tk, rm, rn) = (64, 64, 32, 4, 4)
            } else {
                (tm, tn, tk, rm, rn) = (64, 64, 16, 4, 4)
            }
        }

        var options: String { "-D TM=\(tm) -D TN=\(tn) -D TK=\(tk) -D RM=\(rm) -D RN=\(rn)" }
    }

    /// The -D options and kernel arguments (after the kernel's own) that describe an NF4 weight whose elements
    /// round to `rounding`.
    private func nf4Description(_ w: NF4Weight, rounding: DType) -> (options: String, arguments: [KernelArgument]) {
        var options = "-D BLOCK_SHIFT=\(w.blocksize.trailingZeroBitCount) -D ROUND_TYPE=\(rounding.kernelCode)"
        let arguments: [KernelArgument]
        switch w.absmax {
        case .float32(let absmax):
            options += " -D DOUBLE_QUANT=0"
            // The nested operands are never read: the codes stand in for them.
            arguments = [.tensor(absmax), .tensor(w.codes), .tensor(w.map), .float(0), .int(1)]
        case .doubleQuantized(let codes, let map, let scales, let offset, let nested):
            options += " -D DOUBLE_QUANT=1"
            arguments = [.tensor(scales), .tensor(codes), .tensor(map), .float(offset), .int(nested)]
        }
        return (options, arguments)
    }

    public func quantizedGEMM(_ op: QuantizedGEMM) throws {
        try quantizedGEMM(op, kernel: device.kind == .cpu ? .strips : .tiles)
    }

    /// Runs `op` with a given kernel (tests and benchmarks compare them).
    public func quantizedGEMM(_ op: QuantizedGEMM, kernel which: NF4GEMMKernel) throws {
        try requireOwned(op)
        if which == .strips { return try quantizedGEMMStrips(op) }
        let tiling = NF4Tiling(kind: device.kind)
        let w = nf4Description(op.weight, rounding: op.elementDType)
        let options = "-D TRANS_W=\(op.transposeW ? 1 : 0) \(w.options) \(tiling.options)"
        let (itemsN, itemsM) = (tiling.tn / tiling.rn, tiling.tm / tiling.rm)
        try launch(try kernel("nf4_gemm", file: "nf4", options: options),
                   global: [(op.n + tiling.tn - 1) / tiling.tn * itemsN, (op.m + tiling.tm - 1) / tiling.tm * itemsM],
                   local: [itemsN, itemsM],
                   [.int(op.m), .int(op.n), .int(op.k), .float(op.alpha), .float(op.beta),
                    .tensor(op.a), .tensor(op.c), .tensor(op.bias ?? op.c), .int(op.bias == nil ? 0 : 1),  // C stands in
                    .tensor(op.weight.codes), .tensor(op.weight.map)]
                   + w.arguments + [.int(op.weight.blockCount), .uint(0)])
    }

    /// nf4_gemm_strips: rows are split only as far as needed for about four items per compute unit, at least
    /// 48 rows each (dequantization repeats once per row range).
    private func quantizedGEMMStrips(_ op: QuantizedGEMM) throws {
        let w = nf4Description(op.weight, rounding: op.elementDType)
        let options = "-D TRANS_W=\(op.transposeW ? 1 : 0) \(w.options)"
        let strips = (op.n + 31) / 32
        let rowItems = max(1, min((4 * device.computeUnits + strips - 1) / strips, op.m / 48))
        let rowsPerItem = (op.m + rowItems - 1) / rowItems
        try launch(try kernel("nf4_gemm_strips", file: "nf4", options: options),
                   global: [strips, (op.m + rowsPerItem - 1) / rowsPerItem], local: [1, 1],
                   [.int(op.m), .int(op.n), .int(op.k), .float(op.alpha), .float(op.beta),
                    .tensor(op.a), .tensor(op.c), .tensor(op.bias ?? op.c), .int(op.bias == nil ? 0 : 1),
                    .tensor(op.weight.codes), .tensor(op.weight.map)]
                   + w.arguments + [.uint(0), .int(rowsPerItem)])
    }

    public func dequantizeNF4(_ op: NF4Dequantize) throws {
        try requireOwned(op)
        let w = nf4Description(op.weight, rounding: op.weight.dtype)
        try launch(try kernel("nf4_dequantize", file: "nf4", options: w.options), global: [op.weight.count],
                   [.long(op.weight.count), .tensor(op.weight.codes), .tensor(op.weight.map)]
                   + w.arguments + [.uint(0), .tensor(op.destination)])
    }
}
