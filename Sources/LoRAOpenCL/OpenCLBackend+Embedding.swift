// OpenCL embedding lookup and its gradient: Kernels/embedding.cl, one program per table dtype.
import LoRARuntime

extension OpenCLBackend {
    public func embedding(_ op: EmbeddingLookup) throws {
        try requireOwned(op)
        let k = try kernel("embedding", file: "embedding", options: "-D TABLE_TYPE=\(op.table.dtype.kernelCode)")
        try launch(k, global: [op.count * op.width], [
            .tensor(op.table), .tensor(op.indices), .tensor(op.output), .int(op.table.shape[0]), .int(op.width),
            .int(op.count), .int(op.accumulate ? 1 : 0),
        ])
    }
}

extension OpenCLBackend {
    public func embeddingBackward(_ op: EmbeddingBackward) throws {
        try requireOwned(op)
        let k = try kernel("embedding_backward", file: "embedding")
        try launch(k, global: [op.width], [
            .tensor(op.indices), .tensor(op.dOutput), .tensor(op.dTable), .int(op.dTable.shape[0]), .int(op.width), .int(op.count),
        ])
    }
}
