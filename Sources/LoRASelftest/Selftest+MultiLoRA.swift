// Many adapters in one batch: `y[i] += s_a·(x[i]·A_aᵀ)·B_aᵀ` with a = the row's slot (-1: none), through the
// per-row kernels (Kernels/multi_lora.cl: one shrink and one expand launch over every row), the per-segment GEMMs
// and the device's default. Slots of different ranks (one of rank 0: an adapter that does not target the module),
// rows spread over the slots and in segments.
// Bound: componentwise, a chain of two sums (in, then the rank + 2 terms), so 2γ_{in+R+2} of Σ|terms|, computed on
// the CPU over absolute values.
import Foundation
import SwiftLoRA

struct MultiLoRAProblem: Sendable, CustomStringConvertible {
    let inFeatures: Int, outFeatures: Int
    /// Each slot's rank (0: the slot adds nothing here); the bank pads them to the largest.
    let ranks: [Int]
    /// Each row's slot, -1 for none (per-row form); or, with `segments`, the segments' slots.
    let adapters: [Int32]
    /// Segment starts (one more than `adapters`); nil: `adapters` is per row.
    var segments: [Int]? = nil

    var rows: Int { segments?.last ?? adapters.count }
    var maxRank: Int { ranks.max() ?? 1 }
    var description: String {
        "\(rows) rows over \(ranks.count) slots (ranks \(ranks)), \(inFeatures) → \(outFeatures)"
            + (segments == nil ? ", per row" : ", \(adapters.count) segments")
    }

    /// y after the op on `backend`; `magnitude` runs it over absolute values.
    func run(on backend: any Backend, path: MultiLoRAPath?, seed: UInt64, magnitude: Bool = false) throws -> [Float] {
        func values(_ count: Int, _ offset: UInt64) -> [Float] {
            let v = randomValues(count, seed: seed + offset)
            return magnitude ? v.map(abs) : v
        }
        let (s, r) = (ranks.count, maxRank)
        let x = try backend.upload(values(rows * inFeatures, 0), shape: [rows, inFeatures])
        let a = try backend.upload(values(s * r * inFeatures, 1), shape: [s, r, inFeatures])
        let bT = try backend.upload(values(s * r * outFeatures, 2), shape: [s, r, outFeatures])
        let y = try backend.upload(values(rows * outFeatures, 3), shape: [rows, outFeatures])
        let slots = try LoRASlotTable(ranks: ranks, scales: ranks.indices.map { 0.5 + Float($0) }, backend: backend)
        let rowSlots = try segments.map { try AdapterRows(segmentStarts: $0, adapters: adapters, backend: backend) }
            ?? AdapterRows(indices: adapters, backend: backend)
        let op = try MultiLoRA(x: x, a: a, bT: bT, slots: slots, rows: rowSlots, y: y)
        if let path, let cl = backend as? OpenCLBackend { try cl.multiLoRA(op, path: path) } else { try backend.multiLoRA(op) }
        return try y.toArray()
    }
}

extension Selftest {
    static let multiLoRAProblems = [
        MultiLoRAProblem(inFeatures: 70, outFeatures: 45, ranks: [8, 3, 0, 16], adapters: [0, -1, 3, 1, 1, 2, 0, 3, -1, 0, 1]),
        MultiLoRAProblem(inFeatures: 129, outFeatures: 257, ranks: [4, 17], adapters: [1, -1, 0, 1],
                         segments: [0, 20, 20, 33, 70]),
        MultiLoRAProblem(inFeatures: 64, outFeatures: 96, ranks: [1], adapters: [0]),
    ]

    static func multiLoRACheck(_ name: String, path: MultiLoRAPath?) -> Check {
        Check(name: name) { s in
            .compared(try multiLoRAProblems.enumerated().map { index, problem in
                let seed = 9000 + UInt64(index) * 10
                let device = try problem.run(on: s.device, path: path, seed: seed)
                let cpu = try problem.run(on: s.cpu, path: nil, seed: seed)
                let magnitude = try problem.run(on: s.cpu, path: nil, seed: seed, magnitude: true)
                return Comparison.measure(device, cpu, magnitude: .componentwise(magnitude),
                                          tolerance: sumBound(problem.inFeatures + problem.maxRank + 2), label: problem.description)
            })
        }
    }

    static var multiLoRAChecks: [Check] {
        [multiLoRACheck("multi_lora.rows", path: .perRow), multiLoRACheck("multi_lora.segments", path: .segments),
         multiLoRACheck("multi_lora", path: nil)]
    }
}
