// `lora bench train`: tokens/s and peak memory of whole LoRA training steps (forward, backward, AdamW) on a
// random-weight model of a named config (GPT-2 or Llama shapes), as Benchmarks/pytorch_train_bench.py measures
// PyTorch + PEFT. Under mpirun or srun, data-parallel: --batch sequences per rank, tokens/s of the whole job, and the
// share of a step the gradient all-reduce takes.
import ArgumentParser
import Foundation
import SwiftLoRA

struct TrainBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train", abstract: "Tokens/s and peak RSS of LoRA training steps (r=8, alpha=16 on the attention matrices).")

    /// The configs, with their default batch.
    static let configs: [String: (batch: Int, make: @Sendable (UInt64, any Backend, ModelLoadOptions) throws -> any LanguageModel)] = [
        "gpt2-small": (4, { try GPT2Model(config: .small, seed: $0, backend: $1, options: $2) }),
        "tiny": (16, { try GPT2Model(config: .tiny, seed: $0, backend: $1, options: $2) }),
        "smollm-135m": (4, { try LlamaModel(config: .smolLM135M, seed: $0, backend: $1, options: $2) }),
        "tiny-llama": (16, { try LlamaModel(config: .tiny, seed: $0, backend: $1, options: $2) }),
    ]

    @Option(help: "gpt2-small (12 layers, 768 wide, vocab 50257), tiny (GPT-2: 2 layers, 128 wide, vocab 256), smollm-135m (SmolLM2-135M's shape) or tiny-llama (2 layers, 128 wide, GQA, vocab 256). LoRA on attn.c_attn, attn.c_proj (GPT-2) or q/k/v/o_proj (Llama).")
    var config = "tiny"
    @Option(help: "Sequences per step (default: 4 for gpt2-small and smollm-135m, 16 for tiny and tiny-llama).") var batch: Int?
    @Option(help: "Tokens per sequence.") var seq = 128
    @Option(help: "LoRA rank.") var rank = 8
    @Option(help: "Timed steps (after 2 warm-up steps).") var steps = 10
    @Option(help: "adamw, paged_adamw or sgd.") var optimizer = "adamw"
    @Flag(help: "Recompute each block's forward in backward instead of keeping its activations (lora train --gradient-checkpointing).")
    var gradientCheckpointing = false
    @OptionGroup var device: DeviceOptions
    @OptionGroup var load: LoadOptions
    @Flag(help: "One JSON object and nothing else on stdout.") var json = false

    func validate() throws {
        guard Self.configs[config] != nil else { throw ValidationError("--config takes \(Self.configs.keys.sorted().joined(separator: ", "))") }
        guard seq >= 2, rank >= 1, steps >= 1, (batch ?? 1) >= 1 else { throw ValidationError("--seq ≥ 2, --rank, --steps and --batch ≥ 1") }
        do { _ = try Optimizer.Kind.named(optimizer) } catch LoRAError.invalidArgument(let message) { throw ValidationError("--optimizer: \(message)") }
    }

    func run() throws {
        guard let job = try DataParallelJob.start() else { return try measure(job: nil) }
        job.run { try measure(job: job) }
    }

    func measure(job: DataParallelJob?) throws {
        let ranks = job?.size ?? 1
        let backend = try job.map { job in try job.agree { try device.select(announce: !json && job.isRoot, rank: (job.rank, job.communicator.launch.localRank)) } }
            ?? device.select(announce: !json)
        if job?.isRoot ?? true { KernelParametersInfo.announce(backend, json: json) }
        let (defaultBatch, make) = Self.configs[config]!
        let batch = self.batch ?? defaultBatch
        let model = try make(1, backend, load.options())
        guard seq <= model.maxPositions else { throw ValidationError("--seq \(seq) exceeds \(config)'s \(model.maxPositions) positions") }
        try model.applyLoRA(LoRAConfig(rank: rank, alpha: 16, targets: model.defaultLoRATargets), seed: 2)
        model.gradientCheckpointing = gradientCheckpointing
        var generator = SeededGenerator(seed: 3)
        let tokens = (0..<(batch * ranks)).map { _ in (0..<seq).map { _ in Int(generator.next() % UInt64(model.vocabularySize)) } }
        var options = TrainingOptions(steps: steps + 2)
        (options.learningRate, options.maxGradNorm, options.optimizer) = (1e-4, 0, try Optimizer.Kind.named(optimizer))
        let trainer = try Trainer(model: model, data: try TrainingData(fixedBatch: tokens), options: options, group: job?.communicator)
        try trainer.synchronizeState()
        trainer.timesWaitApart = job != nil
        if let notice = trainer.optimizer.notice, job?.isRoot ?? true { FileHandle.standardError.write(Data((notice + "\n").utf8)) }
        var speeds: [Double] = [], stepSeconds = 0.0, exchangeSeconds = 0.0, waitSeconds = 0.0
        for step in 0..<(steps + 2) {
            let before = (trainer.communicationSeconds, trainer.waitSeconds)
            let record = try trainer.trainStep()
            if step >= 2 {
                speeds.append(record.tokensPerSecond)
                stepSeconds += Double(batch * ranks * seq) / record.tokensPerSecond
                exchangeSeconds += trainer.communicationSeconds - before.0
                waitSeconds += trainer.waitSeconds - before.1
            }
        }
        // Every rank measured its own shares of a step: the exchange (gather, all-reduce, scatter) and the wait for the
        // slowest rank before it; the job reports the mean over ranks (rank 0 prints).
        var shares = [exchangeSeconds / stepSeconds, waitSeconds / stepSeconds]
        if let job { try shares.withUnsafeMutableBufferPointer { try job.communicator.allReduceSum($0) } }
        guard job?.isRoot ?? true else { return }
        let (share, wait) = (shares[0] / Double(ranks), shares[1] / Double(ranks))
        let median = speeds.sorted()[speeds.count / 2]
        let peak = Self.peakResidentMegabytes()
        let bits = model.quantizedBitsPerParameter
        if json {
            print(String(format: #"{"config": "%@", "device": "%@", "quantize": %@, "batch": %d, "seq": %d, "rank": %d, "tokens_per_s": %.1f, "peak_rss_mb": %.0f, "weight_bytes": %d, "weight_bits_per_param": %@, "optimizer": "%@", "optimizer_state_device_bytes": %d, "gradient_checkpointing": %@, "estimated_step_bytes": %ld}"#,
                         config, backend.name, load.quantize.map { "\"\($0)\"" } ?? "null", batch, seq, rank, median, peak,
                         model.weightBytes, bits.map { String(format: "%.3f", $0) } ?? "null", optimizer,
                         trainer.optimizer.stateDeviceBytes, gradientCheckpointing ? "true" : "false",
                         model.trainingStepBytes(batch: batch, length: seq)).dropLast()
                + String(format: #", "ranks": %d, "allreduce_share": %.4f, "wait_share": %.4f"#, ranks, share, wait)
                + ", \"kernel_parameters\": \(KernelParametersInfo(backend)?.json ?? "null")}")
        } else {
            print(String(format: "train %@%@ batch %d × seq %d, r=%d, %@%@: %.1f tokens/s (median of %d steps), peak RSS %.0f MB, optimizer state on the device %d bytes",
                         config, bits.map { String(format: " (NF4, %.2f bits per parameter)", $0) } ?? "", batch, seq, rank,
                         optimizer, gradientCheckpointing ? ", gradient checkpointing" : "", median, steps, peak,
                         trainer.optimizer.stateDeviceBytes)
                + (job == nil ? "" : String(format: "; %d ranks (tokens/s of the whole job), gradient exchange %.1f%% of a step, waiting for the slowest rank %.1f%%",
                                            ranks, 100 * share, 100 * wait)))
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
