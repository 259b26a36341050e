// OpenCL elementwise ops: fill and copy use the queue's own commands; block copy, bias add, axpy and dropout are
// Kernels/elementwise.cl.
import LoRARuntime

extension OpenCLBackend {
    public func fill(_ tensor: Tensor, with value: Float) throws {
        try requireOwned("fill", tensor)
        try requireFloat32("fill", ("the tensor", tensor))
        var pattern = value
        try api.check(api.enqueueFillBuffer(queue.handle, buffer(tensor), &pattern, 4, 0, tensor.byteCount, 0, nil, nil),
                      "clEnqueueFillBuffer")
    }

    public func copy(_ source: Tensor, to destination: Tensor) throws {
        try validateCopy(source, destination)
        guard source.storage !== destination.storage else { return }
        try api.check(api.enqueueCopyBuffer(queue.handle, buffer(source), buffer(destination), 0, 0, source.byteCount, 0, nil, nil),
                      "clEnqueueCopyBuffer")
    }

    public func blockCopy(_ op: BlockCopy) throws {
        try requireOwned(op)
        let k = try kernel("block_copy", file: "elementwise")
        let (s, d) = (op.source, op.destination)
        try launch(k, global: [op.cols, op.rows, op.batch], [
            .tensor(s.tensor), .int(s.offset), .int(s.ld), .int(s.batchStride),
            .tensor(d.tensor), .int(d.offset), .int(d.ld), .int(d.batchStride), .int(op.rows), .int(op.cols),
        ])
    }

    public func addBias(_ op: BiasAdd) throws {
        try requireOwned(op)
        try addBias(op.bias, to: GEMMOperand(op.y, ld: op.cols), rows: op.rows, batch: 1)
    }

    /// bias `[cols]` added to each row of a strided batch of `rows × bias.count` matrices (elementwise.cl).
    func addBias(_ bias: Tensor, to y: GEMMOperand, rows: Int, batch: Int) throws {
        try launch(try kernel("add_bias", file: "elementwise"), global: [bias.count, rows, batch], [
            .tensor(y.tensor), .int(y.offset), .int(y.ld), .int(y.batchStride), .tensor(bias),
        ])
    }

    public func axpy(_ op: Axpy) throws {
        try requireOwned(op)
        let k = try kernel("axpy", file: "elementwise")
        try launch(k, global: [op.y.count], [.tensor(op.y), .tensor(op.x), .float(op.alpha), .int(op.y.count)])
    }

    public func dropout(_ op: Dropout) throws {
        try requireOwned(op)
        let k = try kernel("dropout", file: "elementwise")
        let seed = op.seedWords
        try launch(k, global: [op.x.count], [
            .tensor(op.x), .tensor(op.y), .uint(op.threshold), .float(op.keepScale), .uint(seed.low), .uint(seed.high),
            .uint(op.indexOffset), .int(op.x.count),
        ])
    }
}
