// CPU embedding lookup (row copies or adds, rows split over the pool; a bfloat16 or float16 table is converted as
// its rows are read) and its gradient (column blocks split over the pool, each summed over the ids in order).

extension CPUBackend {
    public func embedding(_ op: EmbeddingLookup) throws {
        try requireOwned(op)
        let (table, ids, out, width) = (UnsafeRawPointer(bytes(op.table)), int32s(op.indices), elements(op.output), op.width)
        let (rows, dtype, rowBytes) = (op.table.shape[0], op.table.dtype, op.width * op.table.dtype.size)
        let accumulate = op.accumulate
        forEachRowRange(rows: op.count, cols: width) { range in
            // An accumulated typed row is converted here first.
            let converted = accumulate && dtype != .float32 ? ThreadScratch.current(.part, floats: width) : nil
            for n in range {
                let id = Int(ids[n]), target = out + n * width
                guard id >= 0, id < rows else {
                    target.update(repeating: .nan, count: width)
                    continue
                }
                let source = table + id * rowBytes
                if !accumulate {
                    ElementRows.widen(source, dtype, into: target, count: width)
                } else if let converted {
                    ElementRows.widen(source, dtype, into: converted, count: width)
                    Self.addRow(converted, into: target, count: width)
                } else {
                    Self.addRow(UnsafeMutablePointer(mutating: source.assumingMemoryBound(to: Float.self)), into: target, count: width)
                }
            }
        }
    }

    public func embeddingBackward(_ op: EmbeddingBackward) throws {
        try requireOwned(op)
        let (ids, dOut, dTable, width) = (int32s(op.indices), elements(op.dOutput), elements(op.dTable), op.width)
        let rows = op.dTable.shape[0]
        let blocks = (width + 63) / 64
        forEachPart(parts: blocks, work: op.count * width) { block in
            let columns = block * 64..<min(width, block * 64 + 64)
            for n in 0..<op.count {
                let id = Int(ids[n])
                guard id >= 0, id < rows else { continue }
                Self.addRow(dOut + n * width + columns.lowerBound, into: dTable + id * width + columns.lowerBound, count: columns.count)
            }
        }
    }
}
