// A multi-LoRA problem (MultiLoRA.swift) that runs on any backend and against a naive per-row Double reference:
// rows of base only (-1), adapters of different ranks, slots of rank 0 (an adapter absent from the module), per-row
// indices or segments (empty ones included). The bank's padding and the storage of rank-0 slots hold NaN, so a
// kernel that reads past a slot's rank poisons its rows.
import SwiftLoRA

public struct MultiLoRACase: Sendable, CustomStringConvertible {
    public enum Rows: Sendable {
        /// One slot per row (BGMV).
        case indices([Int32])
        /// Punica's segment starts (one more than adapters) and each segment's adapter (SGMV).
        case segments(starts: [Int], adapters: [Int32])
    }

    public let name: String
    public let inFeatures: Int, outFeatures: Int
    /// Each slot's rank (0: adds nothing) and scale.
    public let ranks: [Int], scales: [Float]
    /// R, at least the largest rank.
    public let paddedRank: Int
    public let rows: Rows
    public let seed: UInt64

    public init(_ name: String, in inFeatures: Int, out outFeatures: Int, ranks: [Int], paddedRank: Int? = nil,
                rows: Rows, seed: UInt64 = 1) {
        (self.name, self.inFeatures, self.outFeatures, self.ranks, self.rows, self.seed) = (name, inFeatures, outFeatures, ranks, rows, seed)
        scales = ranks.indices.map { 0.25 + 0.5 * Float($0 % 5) }
        self.paddedRank = paddedRank ?? max(1, ranks.max() ?? 1)
    }

    public var description: String { "\(name): \(count) rows, in \(inFeatures), out \(outFeatures), ranks \(ranks)" }

    /// Each row's slot.
    public var rowIndices: [Int32] {
        switch rows {
        case .indices(let indices): return indices
        case .segments(let starts, let adapters):
            var indices = [Int32](repeating: -1, count: starts.last!)
            for (k, a) in adapters.enumerated() { for i in starts[k]..<starts[k + 1] { indices[i] = a } }
            return indices
        }
    }

    public var count: Int { rowIndices.count }
    var slotCount: Int { ranks.count }

    /// Pseudo-random slot indices in -1..<slots for `count` rows.
    public static func randomIndices(_ count: Int, slots: Int, seed: UInt64) -> [Int32] {
        var generator = SeededGenerator(seed: seed)
        return (0..<count).map { _ in Int32(Int(generator.next() % UInt64(slots + 1)) - 1) }
    }

    var x: [Float] { randomValues(count * inFeatures, seed: seed) }
    var y0: [Float] { randomValues(count * outFeatures, seed: seed + 1) }

    /// A `[S, R, in]`, its rows past each slot's rank NaN.
    var a: [Float] {
        let values = randomValues(slotCount * paddedRank * inFeatures, seed: seed + 2)
        return values.indices.map { i in (i / inFeatures) % paddedRank < ranks[i / (paddedRank * inFeatures)] ? values[i] : .nan }
    }

    /// Bᵀ `[S, R, out]`, its rows past each slot's rank NaN.
    var bT: [Float] {
        let values = randomValues(slotCount * paddedRank * outFeatures, seed: seed + 3)
        return values.indices.map { i in (i / outFeatures) % paddedRank < ranks[i / (paddedRank * outFeatures)] ? values[i] : .nan }
    }

    /// `y0[i] + s_a·(x[i]·A_aᵀ)·B_aᵀ` row by row, in Double.
    public func reference() -> [Double] {
        let (x, y0, a, bT, indices) = (self.x, self.y0, self.a, self.bT, rowIndices)
        var y = y0.map(Double.init)
        for i in 0..<count {
            let slot = Int(indices[i])
            guard slot >= 0, ranks[slot] > 0 else { continue }
            let u = (0..<ranks[slot]).map { q in
                (0..<inFeatures).reduce(0.0) { $0 + Double(x[i * inFeatures + $1]) * Double(a[(slot * paddedRank + q) * inFeatures + $1]) }
            }
            for o in 0..<outFeatures {
                let dot = (0..<ranks[slot]).reduce(0.0) { $0 + u[$1] * Double(bT[(slot * paddedRank + $1) * outFeatures + o]) }
                y[i * outFeatures + o] += Double(scales[slot]) * dot
            }
        }
        return y
    }

    /// The op on `backend` (through `run`, for a backend with several paths); returns y.
    public func run(on backend: any Backend, _ run: ((MultiLoRA) throws -> Void)? = nil) throws -> [Float] {
        let adapterRows: AdapterRows = switch rows {
        case .indices(let indices): try AdapterRows(indices: indices, backend: backend)
        case .segments(let starts, let adapters): try AdapterRows(segmentStarts: starts, adapters: adapters, backend: backend)
        }
        let y = try backend.upload(y0, shape: [count, outFeatures])
        let op = try MultiLoRA(x: backend.upload(x, shape: [count, inFeatures]),
                               a: backend.upload(a, shape: [slotCount, paddedRank, inFeatures]),
                               bT: backend.upload(bT, shape: [slotCount, paddedRank, outFeatures]),
                               slots: LoRASlotTable(ranks: ranks, scales: scales, backend: backend), rows: adapterRows, y: y)
        if let run { try run(op) } else { try backend.multiLoRA(op) }
        return try y.toArray()
    }

    /// Shapes worth covering: decode mixes, segments with empty ones, many adapters, ranks past the narrow kernel's
    /// 16, large enough to split over threads, every row base only; on the CPU, groups below 16 rows (row by row),
    /// contiguous groups and scattered ones (gathered) of 16 or more (GEMMs).
    public static let cases: [MultiLoRACase] = [
        MultiLoRACase("decode mix", in: 37, out: 29, ranks: [4, 0, 8, 1, 16, 3],
                      rows: .indices(randomIndices(16, slots: 6, seed: 7))),
        MultiLoRACase("segments, empty ones", in: 40, out: 24, ranks: [2, 5, 0, 7], paddedRank: 9,
                      rows: .segments(starts: [0, 0, 5, 5, 12, 20, 20, 23], adapters: [3, 0, 1, -1, 2, 0, 1])),
        MultiLoRACase("one adapter in scattered runs", in: 33, out: 65, ranks: [6, 3],
                      rows: .indices([0, 0, -1, 0, 1, 1, 0, -1, -1, 0, 0, 0])),
        MultiLoRACase("many adapters", in: 48, out: 56, ranks: (0..<40).map { ($0 * 7) % 33 }, paddedRank: 40,
                      rows: .indices(randomIndices(64, slots: 40, seed: 11))),
        MultiLoRACase("prefill segments, threaded", in: 256, out: 384, ranks: [8, 16, 32],
                      rows: .segments(starts: [0, 90, 150, 300, 301], adapters: [1, -1, 0, 2])),
        MultiLoRACase("decode, 8 adapters, threaded", in: 512, out: 512, ranks: [8, 16, 8, 12, 8, 16, 4, 8],
                      rows: .indices((0..<64).map { Int32($0 % 9) - 1 })),
        MultiLoRACase("scattered groups large enough for GEMMs", in: 256, out: 320, ranks: [8, 24, 4],
                      rows: .indices((0..<128).map { Int32($0 % 4) - 1 })),
        MultiLoRACase("base only", in: 8, out: 8, ranks: [2], rows: .indices([-1, -1, -1])),
        MultiLoRACase("one row", in: 5, out: 3, ranks: [0, 1], rows: .indices([1])),
    ]
}
