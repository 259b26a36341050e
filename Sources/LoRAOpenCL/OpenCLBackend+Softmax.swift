// OpenCL softmax (causal, windowed, packed rows' segment starts) and its gradient: Kernels/softmax.cl, one work-item per row.
import LoRARuntime

extension OpenCLBackend {
    public func softmax(_ op: Softmax) throws {
        try requireOwned(op)
        let k = try kernel("softmax_forward", file: "softmax")
        try launch(k, global: [op.rows], [
            .tensor(op.x), .tensor(op.y), .int(op.rows), .int(op.cols), .float(op.scale),
            .int(op.causal ? 1 : 0), .int(op.queryLength), .int(op.window ?? 0),
        ] + Self.segmentArguments(op.segmentStarts, standIn: op.x))
    }

    /// The kernels' starts, hasStarts and blocksPerSequence (another buffer stands in for absent starts, unread).
    static func segmentArguments(_ starts: SegmentStarts?, standIn: Tensor) -> [KernelArgument] {
        [.tensor(starts?.tensor ?? standIn), .int(starts == nil ? 0 : 1), .int(starts?.blocksPerSequence ?? 1)]
    }

    public func softmaxBackward(_ op: SoftmaxBackward) throws {
        try requireOwned(op)
        let k = try kernel("softmax_backward", file: "softmax")
        try launch(k, global: [op.rows], [
            .tensor(op.y), .tensor(op.dy), .tensor(op.dx), .int(op.rows), .int(op.cols), .float(op.scale),
            .int(op.causal ? 1 : 0), .int(op.queryLength), .int(op.window ?? 0),
        ] + Self.segmentArguments(op.segmentStarts, standIn: op.y))
    }
}
