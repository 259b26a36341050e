// OpenCL rotary position embedding: Kernels/rotary.cl, one work-item per rotated pair.
import LoRARuntime

extension OpenCLBackend {
    public func rope(_ op: RoPE) throws {
        try requireOwned(op)
        let k = try kernel("rope", file: "rotary")
        let pairs = op.input.count / 2
        try launch(k, global: [pairs], [
            .tensor(op.input), .tensor(op.output), .tensor(op.cos), .tensor(op.sin), .int(pairs), .int(op.heads),
            .int(op.headDim / 2), .int(op.sequenceLength), .int(op.start), .float(op.inverse ? -1 : 1),
            .tensor(op.positions ?? op.input), .int(op.positions == nil ? 0 : 1), .int(op.tablePositions),  // input stands in, unread
        ])
    }
}
