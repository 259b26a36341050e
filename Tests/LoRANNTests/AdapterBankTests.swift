// AdapterBank on every device: one slot equals a LoRALinear with the same A, B and scale; slots of different ranks
// keep their values as the bank grows; a cleared slot adds nothing; a module with a bank and no rows is the base.
import LoRATestSupport
import SwiftLoRA
import Testing

@Suite("Adapter bank")
struct AdapterBankTests {
    /// A LoRALinear over a random `[out, in]` weight with random A and B.
    func layer(_ backend: any Backend, in inF: Int, out outF: Int, rank: Int, alpha: Float, rs: Bool, seed: UInt64) throws
        -> (LoRALinear, a: [Float], b: [Float]) {
        let weight = try backend.upload(randomValues(outF * inF, seed: 99), shape: [outF, inF])
        let layer = try LoRALinear(weight: weight, bias: backend.upload(randomValues(outF, seed: 98), shape: [outF]),
                                   rank: rank, alpha: alpha, useRSLoRA: rs, seed: seed)
        let (a, b) = (randomValues(rank * inF, seed: seed + 1), randomValues(outF * rank, seed: seed + 2))
        try backend.copy(backend.upload(a, shape: [rank, inF]), to: layer.loraA)
        try backend.copy(backend.upload(b, shape: [outF, rank]), to: layer.loraB)
        return (layer, a, b)
    }

    @Test("each row with its slot equals that slot's LoRALinear; cleared slots and -1 rows give the base",
          arguments: TestDevices.names)
    func matchesLoRALinear(device: String) throws {
        let backend = try testBackend(device)
        let (inF, outF, n) = (24, 20, 9)
        let layers = try [(2, Float(4), false), (7, 3, true), (5, 8, false)].enumerated().map { i, p in
            try layer(backend, in: inF, out: outF, rank: p.0, alpha: p.1, rs: p.2, seed: UInt64(10 * i))
        }
        let module = LinearModule(name: "m", base: layers[0].0.base)
        // Slots 2, 0 and 5 (the bank grows in slots and in rank as they arrive).
        let bank = try AdapterBank(backend: backend, inFeatures: inF, outFeatures: outF)
        for (layer, slot) in zip(layers, [2, 0, 5]) {
            try bank.set(slot: slot, a: layer.a, b: layer.b, rank: layer.0.rank, scale: layer.0.scale)
        }
        #expect(bank.capacity >= 6 && bank.maxRank == 7)
        module.adapters = bank
        let xValues = randomValues(n * inF, seed: 5)
        let x = try backend.upload(xValues, shape: [n, inF])
        let base = try backend.empty([n, outF])
        try module.base.forward(x, into: base)
        let expectedBySlot: [Int: [Float]] = try Dictionary(uniqueKeysWithValues: zip([2, 0, 5], layers).map { ($0, try $1.0.forward(x).toArray()) })
        let indices: [Int32] = [0, 2, -1, 5, 5, 0, 2, -1, 0]
        func check(_ got: [Float], cleared: Set<Int>) {
            for (i, slot) in indices.enumerated() {
                let row = i * outF..<(i + 1) * outF
                let expected = slot < 0 || cleared.contains(Int(slot)) ? try! base.toArray()[row] : expectedBySlot[Int(slot)]![row]
                #expect(firstMismatch(Array(got[row]), Array(expected), atol: 1e-5, rtol: 1e-5) == nil, "row \(i) slot \(slot)")
            }
        }
        module.adapterRows = try AdapterRows(indices: indices, backend: backend)
        check(try module.forward(x).toArray(), cleared: [])
        #expect(throws: LoRAError.self) { try module.backward(backend.zeros([n, outF])) }
        try bank.clear(slot: 2)
        check(try module.forward(x).toArray(), cleared: [2])
        module.adapterRows = nil
        #expect(try module.forward(x).toArray() == base.toArray())
    }

    @Test("bank input checks: a slot below 0, values that do not fit the rank and layer")
    func validation() throws {
        let bank = try AdapterBank(backend: CPUBackend.shared, inFeatures: 4, outFeatures: 3)
        #expect(throws: LoRAError.self) { try bank.set(slot: -1, a: [Float](repeating: 0, count: 4), b: [0, 0, 0], rank: 1, scale: 1) }
        #expect(throws: LoRAError.self) { try bank.set(slot: 0, a: [Float](repeating: 0, count: 5), b: [0, 0, 0], rank: 1, scale: 1) }
        #expect(throws: LoRAError.self) { try bank.set(slot: 0, a: [Float](repeating: 0, count: 4), b: [0, 0, 0], rank: 1, scale: .infinity) }
        #expect(bank.isEmpty)
    }
}
