// OpenCL multi-LoRA (MultiLoRA.swift), two ways. Per row (BGMV, Kernels/multi_lora.cl): a shrink kernel writes
// u = x·A_aᵀ for every row at once, an expand kernel adds s_a·u·B_aᵀ, each row reading its own slot: two launches
// whatever the mix of adapters, the shape of decode (one token per sequence). Per segment (SGMV): each run of rows
// sharing an adapter takes the single-adapter path's two GEMMs on offsets into the bank, which the tuned GEMM
// kernel runs far faster once segments are long (prefill). The choice follows the mean active segment length.
import LoRARuntime

/// How an OpenCL backend runs multi-LoRA.
public enum MultiLoRAPath: String, Sendable, CaseIterable {
    /// Kernels/multi_lora.cl: one shrink and one expand launch over every row.
    case perRow
    /// Two GEMMs per segment of rows sharing an adapter.
    case segments
}

extension OpenCLBackend {
    /// Mean rows per active segment from which the segment GEMMs are used.
    static let multiLoRASegmentRows = 8

    public func multiLoRA(_ op: MultiLoRA) throws {
        let active = op.rows.segments.filter { $0.adapter >= 0 && op.slots.ranks[$0.adapter] > 0 }
        let rows = active.reduce(0) { $0 + $1.rows.count }
        try multiLoRA(op, path: rows >= Self.multiLoRASegmentRows * max(1, active.count) ? .segments : .perRow)
    }

    /// Runs `op` along a given path (tests compare both with the reference).
    public func multiLoRA(_ op: MultiLoRA, path: MultiLoRAPath) throws {
        try requireOwned(op)
        guard op.activeGroups.isEmpty == false else { return }
        let (n, r) = (op.count, op.maxRank)
        let u = try empty([n, r])
        switch path {
        case .perRow:
            let shrink = try kernel("multi_lora_shrink", file: "multi_lora")
            try launch(shrink, global: [r, n], [
                .tensor(op.x), .tensor(op.a), .tensor(op.rows.indices), .tensor(op.slots.rankTensor), .tensor(u),
                .int(n), .int(op.inFeatures), .int(r),
            ])
            let expand = try kernel("multi_lora_expand", file: "multi_lora")
            try launch(expand, global: [op.outFeatures, n], [
                .tensor(u), .tensor(op.bT), .tensor(op.rows.indices), .tensor(op.slots.rankTensor), .tensor(op.slots.scaleTensor),
                .tensor(op.y), .int(n), .int(op.outFeatures), .int(r),
            ])
        case .segments:
            let (inF, outF) = (op.inFeatures, op.outFeatures)
            for segment in op.rows.segments where segment.adapter >= 0 && op.slots.ranks[segment.adapter] > 0 {
                let (a, rank, rows) = (segment.adapter, op.slots.ranks[segment.adapter], segment.rows)
                // u [rows, rank] (row stride R) = x[rows] · A_aᵀ;  y[rows] += s_a · u · B_aᵀ (Bᵀ stored [r, out]).
                try gemm(GEMM(m: rows.count, n: rank, k: inF, a: GEMMOperand(op.x, offset: rows.lowerBound * inF, ld: inF),
                              b: GEMMOperand(op.a, offset: a * r * inF, ld: inF), transposeB: true,
                              c: GEMMOperand(u, offset: rows.lowerBound * r, ld: r)))
                try gemm(GEMM(m: rows.count, n: outF, k: rank, alpha: op.slots.scales[a],
                              a: GEMMOperand(u, offset: rows.lowerBound * r, ld: r),
                              b: GEMMOperand(op.bT, offset: a * r * outF, ld: outF),
                              beta: 1, c: GEMMOperand(op.y, offset: rows.lowerBound * outF, ld: outF)))
            }
        }
    }
}
