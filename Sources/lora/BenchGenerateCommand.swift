// `lora bench generate`: tokens/s of batched greedy generation with many adapters in one batch (issue 13's speed
// bar), next to the same batch on a model with one adapter merged into its weights, in the same run.
//   mixed:  a random-weight model of the preset serving --adapters random PEFT adapters unmerged by slot; the
//           --batch prompts' rows go round-robin over the adapters (row b: slot b mod N) through BatchedGenerator
//           (continuous batching, the multi-LoRA banks choosing each row's adapter).
//   merged: the same weights (same seed) with adapter 0 folded into W (lora merge's path, no banks): one adapter
//           for every row, the speed the LoRA paper's merged deployment gets.
// Both generate greedily exactly --new-tokens per row (no stop tokens), alternating round by round; medians over
// the rounds. Tokens/s counts generated tokens only, over the whole run as a user sees it (each prompt's prefill
// included); decode-only figures subtract a prefill-only run (--new-tokens 1: prefill and its first token) of the
// same round from the full run's time, over the (new-tokens − 1) decode tokens per row.
// The adapters: rank and alpha vary across slots as real banks do (slot a: rank R·[1, ½, 1, 2][a mod 4], alpha
// 2·rank on even slots, rank on odd ones), on q/k/v/o_proj (Llama) or attn.c_attn/attn.c_proj (GPT-2), with A and
// B uniform random and nonzero (Benchmarks/peft_generate_bench.py builds the same schedule for the PEFT peer).
import ArgumentParser
import Foundation
import SwiftLoRA

struct GenerateBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Tokens/s of batched greedy generation: rows over many unmerged adapters vs one adapter merged.")

    @Option(help: "smollm-135m (SmolLM2-135M's shape), tiny-llama (2 layers, 128 wide), gpt2-small or tiny (GPT-2).")
    var config = "tiny-llama"
    @Option(help: "Adapters loaded unmerged; the rows are spread round-robin over them.") var adapters = 8
    @Option(help: "Prompts generated together (rows of the batch).") var batch = 16
    @Option(help: "Tokens generated per row, exactly (greedy, no stop tokens).") var newTokens = 32
    @Option(help: "Tokens per prompt (random ids, fixed seed).") var promptTokens = 16
    @Option(help: "Base LoRA rank R (slot a's rank: R·[1, ½, 1, 2][a mod 4]).") var rank = 8
    @Option(help: "Timed rounds, each running mixed and merged once (after one warm-up round).") var rounds = 5
    @OptionGroup var device: DeviceOptions
    @Flag(help: "One JSON object and nothing else on stdout.") var json = false

    static let configs = ["smollm-135m", "tiny-llama", "gpt2-small", "tiny"]

    func validate() throws {
        guard Self.configs.contains(config) else { throw ValidationError("--config takes \(Self.configs.joined(separator: ", "))") }
        guard adapters >= 1, batch >= 1, newTokens >= 2, promptTokens >= 1, rank >= 1, rounds >= 1 else {
            throw ValidationError("--adapters, --batch, --prompt-tokens, --rank and --rounds must be ≥ 1, --new-tokens ≥ 2")
        }
    }

    /// Slot a's rank and alpha (the schedule the PEFT peer repeats).
    static func rankAndAlpha(slot: Int, base: Int) -> (rank: Int, alpha: Float) {
        let rank = max(1, [base, base / 2, base, 2 * base][slot % 4])
        return (rank, Float(slot % 2 == 0 ? 2 * rank : rank))
    }

    func run() throws {
        let backend = try device.select(announce: !json)
        KernelParametersInfo.announce(backend, json: json)
        let make = TrainBench.configs[config]!.make
        let mixedModel = try make(1, backend, ModelLoadOptions())
        guard promptTokens + newTokens <= mixedModel.maxPositions else {
            throw ValidationError("--prompt-tokens + --new-tokens = \(promptTokens + newTokens) exceed \(config)'s \(mixedModel.maxPositions) positions")
        }
        let targets = mixedModel.defaultLoRATargets
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("lora-bench-generate-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        var folders: [String] = []
        for slot in 0..<adapters {
            let path = folder + "/adapter\(slot)"
            let (r, alpha) = Self.rankAndAlpha(slot: slot, base: rank)
            try Self.writeRandomAdapter(LoRAConfig(rank: r, alpha: alpha, targets: targets), modules: mixedModel.linearModules,
                                        seed: 100 + UInt64(slot), folder: path)
            try mixedModel.loadAdapter(name: "adapter\(slot)", folder: path)
            folders.append(path)
        }
        let mergedModel = try make(1, backend, ModelLoadOptions())
        try mergedModel.loadAdapter(folder: folders[0])
        try mergedModel.mergeAdapters()
        // Both as `lora generate` runs them: frozen weights packed once (PackedWeight.swift).
        try mixedModel.packWeightsForInference()
        try mergedModel.packWeightsForInference()

        var generator = SeededGenerator(seed: 7)
        let prompts = (0..<batch).map { _ in (0..<promptTokens).map { _ in Int(generator.next() % UInt64(mixedModel.vocabularySize)) } }
        func requests(mixed: Bool, tokens: Int) -> [GenerationRequest] {
            prompts.enumerated().map { b, prompt in
                GenerationRequest(id: "\(b)", adapterSlot: mixed ? b % adapters : -1, prompt: prompt, maxTokens: tokens)
            }
        }
        let mixed = try BatchedGenerator(model: mixedModel, maxBatch: batch)
        let merged = try BatchedGenerator(model: mergedModel, maxBatch: batch)
        func timed(_ generator: BatchedGenerator, mixed isMixed: Bool, tokens: Int) throws -> (seconds: Double, results: [GenerationResult]) {
            let work = requests(mixed: isMixed, tokens: tokens)
            let t0 = DispatchTime.now().uptimeNanoseconds
            let results = try generator.run(work)
            try backend.synchronize()
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            guard results.allSatisfy({ $0.ids.count == tokens }) else {
                throw BenchError("bench generate: a row stopped before \(tokens) tokens")
            }
            return (seconds, results)
        }
        // Warm-up (buffers, thread pool, the banks' first use), then alternating rounds.
        var mixedResults = try timed(mixed, mixed: true, tokens: newTokens).results
        var mergedResults = try timed(merged, mixed: false, tokens: newTokens).results
        var times: [String: [Double]] = [:]
        var stats = mixed.stats
        for _ in 0..<rounds {
            let m = try timed(mixed, mixed: true, tokens: newTokens)
            let g = try timed(merged, mixed: false, tokens: newTokens)
            (mixedResults, mergedResults, stats) = (m.results, g.results, mixed.stats)
            times["mixed", default: []].append(m.seconds)
            times["merged", default: []].append(g.seconds)
            times["mixed_prefill", default: []].append(try timed(mixed, mixed: true, tokens: 1).seconds)
            times["merged_prefill", default: []].append(try timed(merged, mixed: false, tokens: 1).seconds)
        }
        let median = BenchContext.median
        let generated = Double(batch * newTokens), decoded = Double(batch * (newTokens - 1))
        let mixedRate = generated / median(times["mixed"]!), mergedRate = generated / median(times["merged"]!)
        // Decode only: per round, the full run's time less its prefill-only run's.
        func decodeRate(_ full: String, _ prefill: String) -> Double {
            median(zip(times[full]!, times[prefill]!).map { decoded / max($0 - $1, 1e-9) })
        }
        let mixedDecode = decodeRate("mixed", "mixed_prefill"), mergedDecode = decodeRate("merged", "merged_prefill")
        // Rows on adapter 0 should give the merged model's tokens (up to float rounding); the others, mostly not.
        let slot0 = prompts.indices.filter { $0 % adapters == 0 }
        let others = prompts.indices.filter { $0 % adapters != 0 }
        let slot0Equal = slot0.filter { mixedResults[$0].ids == mergedResults[$0].ids }.count
        let othersEqual = others.filter { mixedResults[$0].ids == mergedResults[$0].ids }.count
        let ranks = (0..<adapters).map { Self.rankAndAlpha(slot: $0, base: rank).rank }
        let threads = backend.name == "cpu" ? ThreadPool.configuredThreads() : 0
        if json {
            print(String(format: #"{"config": "%@", "device": "%@", "threads": %d, "adapters": %d, "ranks": [%@], "batch": %d, "prompt_tokens": %d, "new_tokens": %d, "rounds": %d, "prefill_included": true, "mixed_tokens_per_s": %.1f, "merged_tokens_per_s": %.1f, "mixed_over_merged": %.3f, "mixed_decode_tokens_per_s": %.1f, "merged_decode_tokens_per_s": %.1f, "decode_mixed_over_merged": %.3f, "mixed_seconds": [%@], "merged_seconds": [%@], "mean_decode_batch": %.2f, "slot0_rows_equal_merged": "%d/%d", "other_rows_equal_merged": "%d/%d", "kernel_parameters": %@}"#,
                         config, backend.name, threads, adapters, ranks.map(String.init).joined(separator: ", "), batch, promptTokens,
                         newTokens, rounds, mixedRate, mergedRate, mixedRate / mergedRate, mixedDecode, mergedDecode,
                         mixedDecode / mergedDecode, times["mixed"]!.map { String(format: "%.4f", $0) }.joined(separator: ", "),
                         times["merged"]!.map { String(format: "%.4f", $0) }.joined(separator: ", "),
                         stats.meanBatch, slot0Equal, slot0.count, othersEqual, others.count, KernelParametersInfo(backend)?.json ?? "null"))
        } else {
            print("generate \(config): \(batch) rows × \(newTokens) new tokens after \(promptTokens)-token prompts, "
                + "\(adapters) adapters (ranks \(ranks.map(String.init).joined(separator: ", "))), \(threads > 0 ? "\(threads) threads, " : "")"
                + "median of \(rounds) alternating rounds")
            print("| run | tokens/s (prefill included) | decode-only tokens/s |")
            print("|---|---|---|")
            print(String(format: "| mixed (row b: adapter b mod %d) | %.1f | %.1f |", adapters, mixedRate, mixedDecode))
            print(String(format: "| merged (adapter 0 in W) | %.1f | %.1f |", mergedRate, mergedDecode))
            print(String(format: "| mixed / merged | %.3f | %.3f |", mixedRate / mergedRate, mixedDecode / mergedDecode))
            print("rows on adapter 0 equal to merged: \(slot0Equal)/\(slot0.count); other rows equal to merged: \(othersEqual)/\(others.count)")
        }
    }

    /// Writes a PEFT folder with uniform random A (±1/√in) and B (±0.02), both nonzero, on every module `config`
    /// targets.
    static func writeRandomAdapter(_ config: LoRAConfig, modules: [LinearModule], seed: UInt64, folder: String) throws {
        var generator = SeededGenerator(seed: seed)
        func uniform(_ count: Int, _ bound: Float) -> [Float] {
            (0..<count).map { _ in (Float(generator.next() >> 40) / Float(1 << 24) * 2 - 1) * bound }
        }
        var items: [SafeTensorsWriter.Item] = []
        var fanInFanOut = false
        for module in modules where try config.matches(module.name) {
            let (inF, outF, r) = (module.inFeatures, module.outFeatures, config.rank)
            items.append(.float32(PEFTAdapter.key(module: module.name, "lora_A.weight"), shape: [r, inF],
                                  values: uniform(r * inF, 1 / Float(inF).squareRoot())))
            items.append(.float32(PEFTAdapter.key(module: module.name, "lora_B.weight"), shape: [outF, r],
                                  values: uniform(outF * r, 0.02)))
            fanInFanOut = fanInFanOut || module.dense?.layout == .inOut
        }
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try SafeTensorsWriter.write(items, metadata: ["format": "pt"], to: folder + "/adapter_model.safetensors")
        try AtomicFile.write(Data((PEFTAdapter.configJSON(config, fanInFanOut: fanInFanOut).serialized() + "\n").utf8),
                             to: folder + "/adapter_config.json")
    }
}
