// CPU embedding lookup (row copies or adds, rows split over the pool) and its gradient (column blocks split
// over the pool, each summed over the ids in order).

extension CPUBackend {
    public func embedding(_ op: EmbeddingLookup) throws {
        try requireOwned(op)
        let (table, ids, out, width) = (elements(op.table), elements(op.indices), elements(op.output), op.width)
        let rows = op.table.shape[0]
        let accumulate = op.accumulate
        forEachRowRange(rows: op.count, cols: width) { range in
            for n in range {
                let id = ids[n], target = out + n * width
                guard id >= 0, id == id.rounded(.down), id < Float(rows) else {  // also NaN
                    target.update(repeating: .nan, count: width)
                    continue
                }
                let source = table + Int(id) * width
                if accumulate { Self.addRow(source, into: target, count: width) } else { target.update(from: source, count: width) }
            }
        }
    }

    public func embeddingBackward(_ op: EmbeddingBackward) throws {
        try requireOwned(op)
        let (ids, dOut, dTable, width) = (elements(op.indices), elements(op.dOutput), elements(op.dTable), op.width)
        let rows = Float(op.dTable.shape[0])
        let blocks = (width + 63) / 64
        forEachPart(parts: blocks, work: op.count * width) { block in
            let columns = block * 64..<min(width, block * 64 + 64)
            for n in 0..<op.count {
                let id = ids[n]
                guard id >= 0, id == id.rounded(.down), id < rows else { continue }
                Self.addRow(dOut + n * width + columns.lowerBound, into: dTable + Int(id) * width + columns.lowerBound, count: columns.count)
            }
        }
    }
}
