// CPU multi-LoRA (BGMV/SGMV) against the naive per-row reference, and the op's validation.
import LoRARuntime
import LoRATestSupport
import Testing

@Suite("CPU multi-LoRA")
struct CPUMultiLoRATests {
    let cpu = CPUBackend.shared

    @Test("CPU multi-LoRA matches the per-row reference", arguments: MultiLoRACase.cases.indices)
    func matchesReference(_ index: Int) throws {
        let c = MultiLoRACase.cases[index]
        #expect(firstMismatch(try c.run(on: cpu), c.reference(), atol: 1e-4, rtol: 1e-4) == nil, "\(c)")
    }

    @Test("per-row indices and the same rows as segments give the same bits")
    func indicesEqualSegments() throws {
        let segments = MultiLoRACase("s", in: 19, out: 21, ranks: [3, 0, 5],
                                     rows: .segments(starts: [0, 4, 4, 9, 15], adapters: [2, 0, -1, 2]))
        let indices = MultiLoRACase("i", in: 19, out: 21, ranks: [3, 0, 5], rows: .indices(segments.rowIndices))
        #expect(try segments.run(on: cpu) == indices.run(on: cpu))
    }

    @Test("adapter rows: runs of one index become segments; bad indices and starts are refused")
    func adapterRows() throws {
        let rows = try AdapterRows(indices: [2, 2, -1, 0, 0, 0, 2], backend: cpu)
        #expect(rows.segments == [.init(rows: 0..<2, adapter: 2), .init(rows: 2..<3, adapter: -1),
                                  .init(rows: 3..<6, adapter: 0), .init(rows: 6..<7, adapter: 2)])
        #expect(rows.rowsByAdapter.map(\.adapter) == [2, 0] && rows.rowsByAdapter[0].ranges == [0..<2, 6..<7])
        #expect(try cpu.downloadInt32(rows.indices) == [2, 2, -1, 0, 0, 0, 2] && rows.largestAdapter == 2)
        let sequences = try AdapterRows(sequences: [1, -1, 1], length: 2, backend: cpu)
        #expect(try cpu.downloadInt32(sequences.indices) == [1, 1, -1, -1, 1, 1] && sequences.segments.count == 3)
        #expect(throws: LoRAError.self) { try AdapterRows(indices: [0, -2], backend: cpu) }
        #expect(throws: LoRAError.self) { try AdapterRows(indices: [], backend: cpu) }
        #expect(throws: LoRAError.self) { try AdapterRows(segmentStarts: [0, 3, 2], adapters: [0, 1], backend: cpu) }
        #expect(throws: LoRAError.self) { try AdapterRows(segmentStarts: [1, 3], adapters: [0], backend: cpu) }
        #expect(throws: LoRAError.self) { try AdapterRows(segmentStarts: [0, 3], adapters: [0, 1], backend: cpu) }
        #expect(throws: LoRAError.self) { try AdapterRows(segmentStarts: [0, 0], adapters: [0], backend: cpu) }
    }

    @Test("multi-LoRA validation: slots beyond the bank, ranks beyond its padding, shapes that do not fit")
    func validation() throws {
        let x = try cpu.zeros([4, 6]), y = try cpu.zeros([4, 5])
        let a = try cpu.zeros([2, 3, 6]), b = try cpu.zeros([2, 3, 5])
        let table = try LoRASlotTable(ranks: [3, 1], scales: [1, 2], backend: cpu)
        let rows = try AdapterRows(indices: [0, 1, -1, 1], backend: cpu)
        _ = try MultiLoRA(x: x, a: a, bT: b, slots: table, rows: rows, y: y)
        #expect(throws: LoRAError.self) {
            try MultiLoRA(x: x, a: a, bT: b, slots: table, rows: AdapterRows(indices: [0, 2, 0, 0], backend: cpu), y: y)
        }
        #expect(throws: LoRAError.self) {
            try MultiLoRA(x: x, a: a, bT: b, slots: LoRASlotTable(ranks: [4, 1], scales: [1, 1], backend: cpu), rows: rows, y: y)
        }
        #expect(throws: LoRAError.self) {
            try MultiLoRA(x: x, a: a, bT: b, slots: LoRASlotTable(ranks: [1], scales: [1], backend: cpu), rows: rows, y: y)
        }
        #expect(throws: LoRAError.self) { try MultiLoRA(x: x, a: a, bT: cpu.zeros([2, 2, 5]), slots: table, rows: rows, y: y) }
        #expect(throws: LoRAError.self) { try MultiLoRA(x: cpu.zeros([4, 7]), a: a, bT: b, slots: table, rows: rows, y: y) }
        #expect(throws: LoRAError.self) { try MultiLoRA(x: x, a: a, bT: b, slots: table, rows: rows, y: cpu.zeros([3, 5])) }
        #expect(throws: LoRAError.self) { try LoRASlotTable(ranks: [1], scales: [.nan], backend: cpu) }
        #expect(throws: LoRAError.self) { try LoRASlotTable(ranks: [-1], scales: [1], backend: cpu) }
    }
}
