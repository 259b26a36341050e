// `lora bench train`: tokens/s and peak memory of whole LoRA training steps (forward, backward, AdamW) on a
// random-weight GPT-2 of a named config, as Benchmarks/pytorch_train_bench.py measures PyTorch + PEFT.
import ArgumentParser
import Foundation
import SwiftLoRA

struct TrainBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train", abstract: "Tokens/s and peak RSS of LoRA training steps (r=8, alpha=16 on attn.c_attn, attn.c_proj).")

    @Option(help: "gpt2-small (12 layers, 768 wide, vocab 50257) or tiny (2 layers, 128 wide, vocab 256).")
    var config = "tiny"
    @Option(help: "Sequences per step (default: 4 for gpt2-small, 16 for tiny).") var batch: Int?
    @Option(help: "Tokens per sequence.") var seq = 128
    @Option(help: "LoRA rank.") var rank = 8
    @Option(help: "Timed steps (after 2 warm-up steps).") var steps = 10
    @OptionGroup var device: DeviceOptions
    @Flag(help: "One JSON object and nothing else on stdout.") var json = false

    func validate() throws {
        guard ["gpt2-small", "tiny"].contains(config) else { throw ValidationError("--config takes gpt2-small or tiny") }
        guard seq >= 2, rank >= 1, steps >= 1, (batch ?? 1) >= 1 else { throw ValidationError("--seq ≥ 2, --rank, --steps and --batch ≥ 1") }
    }

    func run() throws {
        let backend = try device.select(announce: !json)
        let shape = config == "tiny" ? GPT2Config.tiny : GPT2Config.small
        let batch = self.batch ?? (config == "tiny" ? 16 : 4)
        guard seq <= shape.positions else { throw ValidationError("--seq \(seq) exceeds \(config)'s \(shape.positions) positions") }
        let model = try GPT2Model(config: shape, seed: 1, backend: backend)
        try model.applyLoRA(LoRAConfig(rank: rank, alpha: 16), seed: 2)
        var generator = SeededGenerator(seed: 3)
        let tokens = (0..<batch).map { _ in (0..<seq).map { _ in Int(generator.next() % UInt64(shape.vocabSize)) } }
        var options = TrainingOptions(steps: steps + 2)
        (options.learningRate, options.maxGradNorm) = (1e-4, 0)
        let trainer = try Trainer(model: model, data: try TrainingData(fixedBatch: tokens), options: options)
        var speeds: [Double] = []
        for step in 0..<(steps + 2) {
            let record = try trainer.trainStep()
            if step >= 2 { speeds.append(record.tokensPerSecond) }
        }
        let median = speeds.sorted()[speeds.count / 2]
        let peak = Self.peakResidentMegabytes()
        if json {
            print(String(format: #"{"config": "%@", "device": "%@", "batch": %d, "seq": %d, "rank": %d, "tokens_per_s": %.1f, "peak_rss_mb": %.0f}"#,
                         config, backend.name, batch, seq, rank, median, peak))
        } else {
            print(String(format: "train %@ batch %d × seq %d, r=%d: %.1f tokens/s (median of %d steps), peak RSS %.0f MB",
                         config, batch, seq, rank, median, steps, peak))
        }
    }

    /// The process's peak resident set (VmHWM) in MB.
    static func peakResidentMegabytes() -> Double {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
              let kb = Double(line.split(separator: " ").dropFirst().first ?? "") else { return 0 }
        return kb / 1024
    }
}
