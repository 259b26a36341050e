// Embedding lookup: rows of a table picked by int32 ids (token ids into wte, positions into wpe).

/// `output[n, :] = table[indices[n], :]`, or `+=` when `accumulate` (adding position embeddings to token ones).
///
/// table is `[rows, width]` of float32, bfloat16 or float16 (converted to float32 as rows are read), indices holds N
/// int32 ids, output is float32 `[..., width]` with N rows. An id outside `0..<rows` writes a row of NaN (the check
/// happens on the device), so a bad token id surfaces as a NaN loss rather than a read outside the table.
public struct EmbeddingLookup: BackendOp {
    public var owner: any Backend { table.backend }
    public let table: Tensor, indices: Tensor, output: Tensor
    public let accumulate: Bool
    public let count: Int, width: Int

    public init(table: Tensor, indices: Tensor, output: Tensor, accumulate: Bool = false) throws {
        try table.backend.requireOwned("embedding", table, indices, output)
        try table.requireDType(DType.floatingPoint, op: "embedding", operand: "table")
        try indices.requireDType([.int32], op: "embedding", operand: "indices")
        try requireFloat32("embedding", ("output", output))
        guard table.rank == 2 else {
            throw LoRAError.shapeMismatch("embedding: the table must be [rows, width], got \(describe(table.shape))")
        }
        let width = table.shape[1]
        guard output.shape.last == width, output.count == indices.count * width else {
            throw LoRAError.shapeMismatch("embedding: \(indices.count) ids of width \(width) do not fill output \(describe(output.shape))")
        }
        guard output.storage !== table.storage, output.storage !== indices.storage else {
            throw LoRAError.invalidArgument("embedding: output cannot share storage with the table or the ids")
        }
        (self.table, self.indices, self.output, self.accumulate) = (table, indices, output, accumulate)
        (count, self.width) = (indices.count, width)
    }
}

/// Gradient of `EmbeddingLookup` with respect to the table: `dTable[indices[n], :] += dOutput[n, :]`.
///
/// indices are int32; dOutput and dTable float32 (a frozen bf16 table gets no gradient; a trained one is float32).
/// Rows with an invalid id (which gave NaN forward) add nothing. Each column is summed over n in order, so
/// repeated ids accumulate the same way on every device and thread count.
public struct EmbeddingBackward: BackendOp {
    public var owner: any Backend { dTable.backend }
    public let indices: Tensor, dOutput: Tensor, dTable: Tensor
    public let count: Int, width: Int

    public init(indices: Tensor, dOutput: Tensor, dTable: Tensor) throws {
        try dTable.backend.requireOwned("embeddingBackward", indices, dOutput, dTable)
        try indices.requireDType([.int32], op: "embeddingBackward", operand: "indices")
        try requireFloat32("embeddingBackward", ("dOutput", dOutput), ("dTable", dTable))
        guard dTable.rank == 2 else {
            throw LoRAError.shapeMismatch("embeddingBackward: dTable must be [rows, width], got \(describe(dTable.shape))")
        }
        let width = dTable.shape[1]
        guard dOutput.shape.last == width, dOutput.count == indices.count * width else {
            throw LoRAError.shapeMismatch("embeddingBackward: \(indices.count) ids of width \(width) do not match dOutput \(describe(dOutput.shape))")
        }
        guard dTable.storage !== dOutput.storage, dTable.storage !== indices.storage else {
            throw LoRAError.invalidArgument("embeddingBackward: dTable cannot share storage with dOutput or the ids")
        }
        (self.indices, self.dOutput, self.dTable, count, self.width) = (indices, dOutput, dTable, indices.count, width)
    }
}
