// `lora bench multi-lora`: the many-adapters LoRA path (MultiLoRA: BGMV per row, SGMV per segment) on a square layer,
// next to the single-adapter LoRA path (LoRAProjection) on the same rows and rank, in the same run. Two layouts per
// size: `bgmv` cycles the adapters row by row (decode: each sequence's one token, scattered), `sgmv` gives each
// adapter one contiguous run of rows (prefill). ratio = single seconds / mixed seconds (1.0: mixing costs nothing).
import ArgumentParser
import Foundation
import SwiftLoRA

struct MultiLoRABench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "multi-lora",
        abstract: "y[i] += s_a·(x[i]·A_aᵀ)·B_aᵀ with the rows spread over --adapters adapters; peer: one adapter for every row.")
    static let defaultSizes = "16x576x8,64x576x16,512x576x8,2048x768x16"
    @OptionGroup var options: BenchOptions
    @Option(help: "Adapters the rows are spread over (each of the given rank).")
    var adapters = 8

    func validate() throws {
        guard adapters >= 1, adapters <= 1024 else { throw ValidationError("--adapters must be in 1...1024") }
    }

    func run() throws {
        let context = try BenchContext(options)
        for size in try options.cases(defaults: Self.defaultSizes, dimensions: 3, op: "multi-lora") {
            for layout in ["rows", "segments"] {
                try context.report(Self.measure(tokens: size[0], width: size[1], rank: size[2], adapters: adapters,
                                                layout: layout, context))
            }
        }
    }

    static func measure(tokens: Int, width: Int, rank: Int, adapters: Int, layout: String,
                        _ context: BenchContext) throws -> BenchResult {
        let backend = context.backend
        let (x, _) = try context.random([tokens, width], seed: 4)
        let (a, _) = try context.random([adapters, rank, width], seed: 5)
        let (bT, _) = try context.random([adapters, rank, width], seed: 6)
        let y = try backend.zeros([tokens, width])
        let slots = try LoRASlotTable(ranks: Array(repeating: rank, count: adapters),
                                      scales: Array(repeating: 0.5, count: adapters), backend: backend)
        let rows = layout == "rows"
            ? try AdapterRows(indices: (0..<tokens).map { Int32($0 % adapters) }, backend: backend)
            : try AdapterRows(segmentStarts: (0...adapters).map { $0 * tokens / adapters },
                              adapters: (0..<adapters).map { Int32($0) }, backend: backend)
        let mixed = try MultiLoRA(x: x, a: a, bT: bT, slots: slots, rows: rows, y: y)
        // The single adapter: an A and B of the same rank (PEFT's layout, which LoRAProjection takes).
        let (singleA, _) = try context.random([rank, width], seed: 7)
        let (singleB, _) = try context.random([width, rank], seed: 8)
        let single = try LoRAProjection(x: x, a: singleA, b: singleB, scale: 0.5, y: y)
        let times = try context.medians([
            { try backend.multiLoRA(mixed); try backend.synchronize() },
            { try backend.loraProject(single); try backend.synchronize() },
        ])
        let flops = 4 * Double(tokens) * Double(width) * Double(rank)
        return BenchResult(op: layout == "rows" ? "bgmv" : "sgmv", device: backend.name, rows: tokens, cols: width, rank: rank,
                           seconds: times[0], gflops: flops / times[0] / 1e9, peer: "single_lora", peerSeconds: times[1],
                           peerGflops: flops / times[1] / 1e9, ratio: times[1] / times[0])
    }
}
