// OpenCL softmax (causal, windowed) and its gradient: Kernels/softmax.cl, one work-item per row.
import LoRARuntime

extension OpenCLBackend {
    public func softmax(_ op: Softmax) throws {
        try requireOwned(op)
        let k = try kernel("softmax_forward", file: "softmax")
        try launch(k, global: [op.rows], [
            .tensor(op.x), .tensor(op.y), .int(op.rows), .int(op.cols), .float(op.scale),
            .int(op.causal ? 1 : 0), .int(op.queryLength), .int(op.window ?? 0),
        ])
    }

    public func softmaxBackward(_ op: SoftmaxBackward) throws {
        try requireOwned(op)
        let k = try kernel("softmax_backward", file: "softmax")
        try launch(k, global: [op.rows], [
            .tensor(op.y), .tensor(op.dy), .tensor(op.dx), .int(op.rows), .int(op.cols), .float(op.scale),
            .int(op.causal ? 1 : 0), .int(op.queryLength), .int(op.window ?? 0),
        ])
    }
}
