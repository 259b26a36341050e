// OpenCL softmax (causal, windowed, packed rows' segment starts) and its gradient: Kernels/softmax.cl, in one of two
// variants chosen by softmax.GROUP (KernelParameters.swift): one work-item per row (CPU devices' default: no local
// memory or barriers, which PoCL runs slowly) or one work-group of at most softmax.WG items per row with
// local-memory reductions (GPUs' default: a row's reads coalesce across the group and long rows are shared out).
import LoRARuntime

/// How the OpenCL row kernels spread a row over work-items.
public enum RowKernelVariant: String, Sendable, CaseIterable {
    /// One work-item per row.
    case item
    /// One work-group per row, reducing in local memory.
    case group
}

extension OpenCLBackend {
    public func softmax(_ op: Softmax) throws {
        try softmax(op, variant: kernelParameters["softmax.GROUP"] == 1 ? .group : .item)
    }

    /// Runs `op` with a given variant (tests and the selftest run both).
    public func softmax(_ op: Softmax, variant: RowKernelVariant) throws {
        try requireOwned(op)
        let arguments: [KernelArgument] = [
            .tensor(op.x), .tensor(op.y), .int(op.rows), .int(op.cols), .float(op.scale),
            .int(op.causal ? 1 : 0), .int(op.queryLength), .int(op.window ?? 0),
        ] + Self.segmentArguments(op.segmentStarts, standIn: op.x)
        try launchRows("softmax_forward", rows: op.rows, cols: op.cols, variant: variant, arguments)
    }

    /// The kernels' starts, hasStarts and blocksPerSequence (another buffer stands in for absent starts, unread).
    static func segmentArguments(_ starts: SegmentStarts?, standIn: Tensor) -> [KernelArgument] {
        [.tensor(starts?.tensor ?? standIn), .int(starts == nil ? 0 : 1), .int(starts?.blocksPerSequence ?? 1)]
    }

    public func softmaxBackward(_ op: SoftmaxBackward) throws {
        try softmaxBackward(op, variant: kernelParameters["softmax.GROUP"] == 1 ? .group : .item)
    }

    /// Runs `op` with a given variant (tests and the selftest run both).
    public func softmaxBackward(_ op: SoftmaxBackward, variant: RowKernelVariant) throws {
        try requireOwned(op)
        let arguments: [KernelArgument] = [
            .tensor(op.y), .tensor(op.dy), .tensor(op.dx), .int(op.rows), .int(op.cols), .float(op.scale),
            .int(op.causal ? 1 : 0), .int(op.queryLength), .int(op.window ?? 0),
        ] + Self.segmentArguments(op.segmentStarts, standIn: op.y)
        try launchRows("softmax_backward", rows: op.rows, cols: op.cols, variant: variant, arguments)
    }

    /// Launches softmax.cl's `name` (one item per row) or `name_group` (a group per row, at most softmax.WG wide).
    private func launchRows(_ name: String, rows: Int, cols: Int, variant: RowKernelVariant, _ arguments: [KernelArgument]) throws {
        switch variant {
        case .item:
            try launch(try kernel(name, file: "softmax"), global: [rows], arguments)
        case .group:
            let k = try kernel(name + "_group", file: "softmax", options: kernelParameters.rowOptions("softmax"))
            let group = try rowGroupSize(k, cols: cols, cap: kernelParameters["softmax.WG"])
            try launch(k, global: [rows * group], local: [group], arguments)
        }
    }
}
