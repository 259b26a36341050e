// OpenCL embedding lookup: Kernels/embedding.cl.
import LoRARuntime

extension OpenCLBackend {
    public func embedding(_ op: EmbeddingLookup) throws {
        try requireOwned(op)
        let k = try kernel("embedding", file: "embedding")
        try launch(k, global: [op.count * op.width], [
            .tensor(op.table), .tensor(op.indices), .tensor(op.output), .int(op.table.shape[0]), .int(op.width),
            .int(op.count), .int(op.accumulate ? 1 : 0),
        ])
    }
}
