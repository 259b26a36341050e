// A dense frozen layer with its weight packed for the CPU GEMM (PackedWeight.swift): merging an adapter into it
// packs it again, so its forwards stay those of the same layer never packed, bit for bit.
import LoRATestSupport
import SwiftLoRA
import Testing

@Suite("Packed dense layers")
struct PackedDenseLinearTests {
    @Test("merging into a packed dense weight packs it again: forwards equal the unpacked layer's", arguments: [true, false])
    func mergeRepacks(transposed: Bool) throws {
        let backend = CPUBackend.shared
        let (outputs, inputs, rank, rows) = (48, 40, 4, 6)
        let values = randomValues(outputs * inputs, seed: 6)
        let layout: DenseLinear.Layout = transposed ? .outIn : .inOut
        let shape = transposed ? [outputs, inputs] : [inputs, outputs]
        let plain = try DenseLinear(weight: backend.upload(values, shape: shape), layout: layout)
        let packed = try DenseLinear(weight: backend.upload(values, shape: shape), layout: layout)
        #expect(try packed.packForInference())
        let a = try backend.upload(randomValues(rank * inputs, seed: 7), shape: [rank, inputs])
        let b = try backend.upload(randomValues(outputs * rank, seed: 8), shape: [outputs, rank])
        for layer in [plain, packed] { try layer.addLowRank(a: a, b: b, scale: 0.75) }
        #expect(packed.weight.packing != nil)
        let x = try backend.upload(randomValues(rows * inputs, seed: 9), shape: [rows, inputs])
        let (y0, y1) = (try backend.empty([rows, outputs]), try backend.empty([rows, outputs]))
        try plain.forward(x, into: y0)
        try packed.forward(x, into: y1)
        #expect(try y0.toArray().map(\.bitPattern) == y1.toArray().map(\.bitPattern))
    }
}
