// CPU embedding lookup: row copies (or adds), rows split over the pool.

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
}
