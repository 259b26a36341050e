// `lora train`: LoRA fine-tuning of a Hugging Face model folder (any family the registry knows) on text, JSONL examples
// (text, prompt/completion, chat; loss where their labels say) or token ids, writing a PEFT adapter, metrics.jsonl,
// loss.svg and (with --checkpoint-every, and whenever Ctrl-C or SIGTERM stops a run after its current step) a
// checkpoint that --resume continues from, refusing flags that contradict it; with eval data, early stopping and the
// best adapter kept in --out/best. Started by mpirun or srun as several ranks, it trains data-parallel over MPI
// (DataParallelJob.swift): --batch rows per rank, gradients averaged, rank 0 writing every file.
import ArgumentParser
import Foundation
import SwiftLoRA

struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train", abstract: "Fine-tune a model with LoRA (or every weight); writes a PEFT adapter folder.",
        discussion: "With no arguments: the built-in demo (adapts Models/tiny-base to reversing words; see README).")

    @Option(name: .customLong("model"), help: "A Hugging Face model folder (config.json, safetensors weights; a tokenizer for --data).")
    var modelFolder: String?
    var model: String { modelFolder ?? "" }
    @Option(help: "UTF-8 training text: tokenized, cut into --seq + 1 windows, shuffled by --seed. A .jsonl file holds one example a line: {\"text\"}, {\"prompt\", \"completion\"} or {\"messages\"} (rendered with the model's chat template; loss on the assistant's tokens); see `lora data`.")
    var data: String?
    @Option(help: "Token ids as `lora eval` takes them; the whole array is the batch at every step.")
    var tokens: String?
    @Option(help: "Output folder: the adapter, metrics.jsonl, loss.svg, checkpoint.safetensors.")
    var out = "lora-out"
    @Option(help: "Start from this PEFT adapter (its config sets rank, alpha, targets and dropout).")
    var adapterInit: String?
    @Option(help: "LoRA rank r.") var rank = 8
    @Option(help: "LoRA alpha (scale alpha/r).") var alpha: Float = 16
    @Option(help: "LoRA dropout on the low-rank path's input.") var dropout: Float = 0
    @Option(help: "Comma-separated target modules, PEFT's matching (a name or its dotted suffix), or all-linear (default: the attention matrices: attn.c_attn,attn.c_proj for GPT-2, q_proj,k_proj,v_proj,o_proj for Llama-family models).")
    var targets: String?
    @Flag(help: "rsLoRA: scale alpha/√r.") var rslora = false
    @Flag(help: "Train every weight instead of an adapter (the LoRA paper's baseline); --out gets a model folder. A --model folder without model.safetensors starts from random weights (--seed).")
    var full = false
    @Option(help: "Updates to run (default: --epochs of --data, else 100).") var steps: Int?
    @Option(help: "Passes over --data (default 1 when --steps is not given).") var epochs: Int?
    @Option(help: "Windows per batch (--data); under mpirun, per rank: the global batch is ranks × --batch, and N ranks train as one process with that batch.") var batch = 8
    @Option(help: "Tokens predicted per window (--data); at most the model's positions − 1. For .jsonl data: the most tokens an example keeps (see --truncate).") var seq = 128
    @Option(help: "JSONL examples longer than --seq: left (keep the end), right (keep the start) or drop.")
    var truncate = "right"
    @Option(help: "A Jinja chat template file for {\"messages\"} data, instead of the model folder's.")
    var chatTemplate: String?
    @Option(help: "Peak learning rate.") var lr: Float = 1e-3
    @Option(help: "constant, linear or cosine (after --warmup linear steps).") var lrSchedule = "constant"
    @Option(help: "Warmup steps.") var warmup = 0
    @Option(help: "adamw, paged_adamw (AdamW with its moments in host memory, streamed to the device one tensor at a time; plain AdamW on the CPU) or sgd.")
    var optimizer = "adamw"
    @Option(help: "Decoupled weight decay.") var weightDecay: Float = 0.01
    @Option(help: "AdamW β₁.") var beta1: Float = 0.9
    @Option(help: "AdamW β₂.") var beta2: Float = 0.999
    @Option(help: "AdamW ε.") var eps: Float = 1e-8
    @Option(help: "Clip the global gradient norm to this (0: off).") var maxGradNorm: Float = 1
    @Option(help: "Seeds A's initialization, the data order and dropout.") var seed: UInt64 = 0
    @OptionGroup var device: DeviceOptions
    @OptionGroup var load: LoadOptions
    @Option(help: "Eval data: UTF-8 text (windows of --seq + 1 tokens) or .jsonl examples (loss where their labels say).") var evalData: String?
    @Option(help: "Hold out this fraction of the training windows or examples for eval (chosen by --seed) instead of --eval-data.")
    var valSplit: Double?
    @Option(help: "Evaluate every N steps (0: only at the end).") var evalEvery = 0
    @Option(help: "Stop after N evaluations in a row without a new best eval loss (0: never).") var earlyStoppingPatience = 0
    @Flag(help: "Keep the adapter (or model, with --full) with the best eval loss in --out/best.") var saveBest = false
    @Option(help: "Write a checkpoint every N steps (0: none).") var checkpointEvery = 0
    @Flag(help: "Continue from --out's checkpoint.safetensors (written every --checkpoint-every steps, and when Ctrl-C or SIGTERM stops a run); the other flags must repeat the run's.") var resume = false
    @Option(help: "Where the metrics go (default: --out/metrics.jsonl).") var metrics: String?
    @Flag(help: "Keep only each transformer block's input in the forward and recompute the block in backward: the same losses and gradients, much less memory for activations, about a third more time per step.")
    var gradientCheckpointing = false
    @Flag(help: "Pack .jsonl examples into windows of up to --seq tokens (first-fit decreasing; each example attends only to itself, positions restart at each, so the loss is unpacked training's); eval data is packed alike. Text data is already cut into full windows.")
    var packing = false
    @Flag(help: "Print one JSON summary at the end (and no progress display).") var json = false

    /// No arguments at all: the built-in demo.
    var isDemo: Bool { modelFolder == nil && data == nil && tokens == nil }

    func validate() throws {
        if isDemo { return }
        guard modelFolder != nil else { throw ValidationError("--model is required (or give no arguments for the built-in demo)") }
        guard (data == nil) != (tokens == nil) else { throw ValidationError("give exactly one of --data and --tokens") }
        if packing && !isJSONL(data) {
            throw ValidationError("--packing packs .jsonl examples; text --data is already cut into full windows of --seq + 1 tokens, and --tokens is one fixed batch")
        }
        guard TrainingOptions.Schedule(rawValue: lrSchedule) != nil else { throw ValidationError("--lr-schedule takes constant, linear or cosine") }
        do { _ = try Optimizer.Kind.named(optimizer) } catch LoRAError.invalidArgument(let message) { throw ValidationError("--optimizer: \(message)") }
        guard lr.isFinite, lr > 0 else { throw ValidationError("--lr must be positive") }
        guard batch >= 1, seq >= 1, warmup >= 0, evalEvery >= 0, checkpointEvery >= 0 else {
            throw ValidationError("--batch and --seq must be at least 1; --warmup, --eval-every, --checkpoint-every at least 0")
        }
        if let steps, steps < 1 { throw ValidationError("--steps must be at least 1") }
        if let epochs, epochs < 1 { throw ValidationError("--epochs must be at least 1") }
        if steps != nil && epochs != nil { throw ValidationError("give --steps or --epochs, not both") }
        guard Truncation(rawValue: truncate) != nil else { throw ValidationError("--truncate takes left, right or drop") }
        if let valSplit {
            guard valSplit > 0 && valSplit < 1 else { throw ValidationError("--val-split must be between 0 and 1 (exclusive)") }
            guard evalData == nil else { throw ValidationError("give --eval-data or --val-split, not both") }
            guard data != nil else { throw ValidationError("--val-split splits --data; --tokens has nothing to split") }
        }
        let hasEval = evalData != nil || valSplit != nil
        if evalEvery > 0 && !hasEval { throw ValidationError("--eval-every needs --eval-data or --val-split") }
        guard earlyStoppingPatience >= 0 else { throw ValidationError("--early-stopping-patience must be at least 0") }
        if earlyStoppingPatience > 0 && (!hasEval || evalEvery == 0) {
            throw ValidationError("--early-stopping-patience needs evaluations: --eval-data or --val-split, and --eval-every")
        }
        if saveBest && !hasEval { throw ValidationError("--save-best needs --eval-data or --val-split") }
        if full && adapterInit != nil { throw ValidationError("--full trains the weights; it takes no --adapter-init") }
        // A file where the folder (or one of the folders above it) should be: say so before loading anything.
        var path = URL(fileURLWithPath: out).standardizedFileURL
        while path.path != "/" {
            var isFolder: ObjCBool = false
            if FileManager.default.fileExists(atPath: path.path, isDirectory: &isFolder) {
                guard isFolder.boolValue else {
                    let what = path.path == URL(fileURLWithPath: out).standardizedFileURL.path ? "is a file" : "is inside \(path.path), a file"
                    throw ValidationError("--out \(out) \(what); --out names the folder the adapter, metrics and checkpoint go to")
                }
                break
            }
            path = path.deletingLastPathComponent()
        }
    }

    func run() throws {
        if isDemo { return try TrainDemo(options: self).run() }
        guard let job = try DataParallelJob.start() else {
            try TrainingRun(command: self, trainer: try prepare()).execute()
            return
        }
        job.run {
            // Every step that can fail on one rank (its device, its files) is agreed on, so all ranks stop together.
            let trainer = try job.agree { try prepare(job: job) }
            try job.communicator.requireSameSettings(trainer.jobSettings)
            try TrainingRun(command: self, trainer: trainer, job: job).execute()
        }
    }

    /// Loads the model, applies the adapter (or full training), reads the data: a trainer ready to run. As a rank of
    /// `job`, on the device its local rank picks, with a global batch of ranks × --batch.
    func prepare(job: DataParallelJob? = nil) throws -> Trainer {
        let backend = try device.select(announce: !json, rank: job.map { ($0.rank, $0.communicator.launch.localRank) })
        let fromScratch = full && !["/model.safetensors", "/model.safetensors.index.json"].contains {
            FileManager.default.fileExists(atPath: model + $0)
        }
        // Full fine-tuning updates float32 weights: a bf16/f16 checkpoint is widened at load unless --dtype says otherwise.
        let lm = fromScratch ? try ModelRegistry.standard.random(folder: model, seed: seed, backend: backend)
            : try loadModel(model, backend: backend, options: load.options(defaultDType: full ? .float32 : nil))
        if fromScratch && !json { print("no weights in \(model): random weights from config.json (seed \(seed))") }
        if isJSONL(data) {
            guard seq <= lm.maxPositions else {
                throw ValidationError("--seq \(seq) is beyond the model's \(lm.maxPositions) positions")
            }
        } else {
            guard seq + 1 <= lm.maxPositions || tokens != nil else {
                throw ValidationError("--seq \(seq) needs windows of \(seq + 1) tokens, beyond the model's \(lm.maxPositions) positions")
            }
        }
        if full { try lm.enableFullTraining() } else if let adapterInit { try lm.loadAdapter(folder: adapterInit) } else {
            let names = targets.map { $0.split(separator: ",").map(String.init) }
            let chosen: LoRAConfig.Targets = names == ["all-linear"] ? .allLinear : names.map { .names($0) } ?? lm.defaultLoRATargets
            try lm.applyLoRA(LoRAConfig(rank: rank, alpha: alpha, targets: chosen, dropout: dropout, useRSLoRA: rslora), seed: seed)
        }
        let (trainingData, eval) = try loadData(ranks: job?.size ?? 1)
        var options = TrainingOptions(steps: steps ?? (epochs.map { $0 * trainingData.batchesPerEpoch }
            ?? (tokens != nil ? 100 : trainingData.batchesPerEpoch)))
        (options.learningRate, options.schedule, options.warmup) = (lr, TrainingOptions.Schedule(rawValue: lrSchedule)!, warmup)
        (options.optimizer, options.weightDecay, options.beta1, options.beta2, options.epsilon) =
            (try Optimizer.Kind.named(optimizer), weightDecay, beta1, beta2, eps)
        (options.maxGradNorm, options.evalEvery, options.checkpointEvery) = (maxGradNorm, evalEvery, checkpointEvery)
        options.earlyStoppingPatience = earlyStoppingPatience
        lm.gradientCheckpointing = gradientCheckpointing  // before the trainer sizes a step's memory
        let trainer = try Trainer(model: lm, data: trainingData, evalData: eval?.tokens, evalLabels: eval?.labels, options: options,
                                  group: job?.communicator)
        trainer.settings = runSettings(ranks: job?.size ?? 1)
        return trainer
    }

    /// The flags a checkpoint records and `--resume` must repeat (the adapter's own settings are recorded from the
    /// model): files by absolute path, and what shapes the data's order. `--batch` is the global batch (ranks ×
    /// --batch), which is what the data order depends on: a run of 2 ranks × 4 resumes as 1 × 8 and back.
    func runSettings(ranks: Int = 1) -> [String: String] {
        func absolute(_ path: String) -> String { URL(fileURLWithPath: path).standardizedFileURL.path }
        var settings = ["--model": absolute(model)]
        if let data {
            settings["--data"] = absolute(data)
            (settings["--seq"], settings["--batch"], settings["--seed"]) = (String(seq), String(batch * ranks), String(seed))
            settings["--packing"] = packing ? "on" : "off"  // packed windows are other batches: a resume must repeat it
        }
        if let tokens { settings["--tokens"] = absolute(tokens) }
        // How the base is stored changes the numbers a resumed run would compute.
        (settings["--dtype"], settings["--quantize"]) = (load.dtype, load.quantize ?? "none")
        return settings
    }

    /// The training batches and the eval sequences (with labels for JSONL), from --tokens, --data, --eval-data and
    /// --val-split. `ranks`: the job's size; a batch is ranks × --batch windows or examples (the global batch).
    func loadData(ranks: Int = 1) throws -> (TrainingData, (tokens: [[Int]], labels: [[Int]]?)?) {
        let batch = self.batch * ranks
        if let tokens { return (try TrainingData(fixedBatch: EvalCommand.readTokens(tokens)), nil) }
        let path = data!
        var builder: ExampleBuilder? = nil
        func examples(_ file: String) throws -> [TokenizedExample] {
            if builder == nil { builder = try ExampleBuilder(modelFolder: model, chatTemplate: chatTemplate) }
            let (examples, report) = try builder!.examples(file: file, seq: seq, truncation: Truncation(rawValue: truncate)!)
            announce(DataCommand.summary(of: report, file: file, seq: seq, truncation: truncate))
            return examples
        }
        var eval: (tokens: [[Int]], labels: [[Int]]?)? = nil
        let training: TrainingData
        if isJSONL(path) {
            var train = try examples(path)
            if let valSplit {
                let (kept, held) = try Self.split(train, fraction: valSplit, seed: seed, what: "examples")
                train = kept
                eval = (held.map(\.inputIDs), held.map(\.labels))
            }
            training = packing
                ? try TrainingData(packing: train.map(\.inputIDs), labels: train.map(\.labels), length: seq, batch: batch, seed: seed,
                                   padID: builder!.padID)
                : try TrainingData(examples: train.map(\.inputIDs), labels: train.map(\.labels), batch: batch, seed: seed,
                                   padID: builder!.padID)
            if packing { announce("packed \(train.count) examples into \(training.windows.count) windows of up to \(seq) tokens") }
        } else {
            var stream = try TrainingData(stream: try tokenize(path), seq: seq, batch: batch, seed: seed)
            if let valSplit {
                let (kept, held) = try Self.split(stream.windows, fraction: valSplit, seed: seed, what: "windows")
                stream = try TrainingData(windows: kept, batch: batch, seed: seed)
                eval = (held, nil)
            }
            training = stream
        }
        if let evalData {
            if isJSONL(evalData) {
                let held = try examples(evalData)
                eval = (held.map(\.inputIDs), held.map(\.labels))
            } else {
                eval = (try windows(of: evalData), nil)
            }
        }
        return (training, eval)
    }

    func isJSONL(_ path: String?) -> Bool { path?.lowercased().hasSuffix(".jsonl") == true }

    /// Prints a line where the run's messages go (stderr with --json).
    func announce(_ text: String) {
        if json { FileHandle.standardError.write(Data((text + "\n").utf8)) } else { print(text) }
    }

    /// A deterministic hold-out: `fraction` of the items (at least one), chosen by a shuffle seeded by `seed`;
    /// both parts keep the file order.
    static func split<T>(_ items: [T], fraction: Double, seed: UInt64, what: String) throws -> (train: [T], held: [T]) {
        let heldCount = max(1, Int((Double(items.count) * fraction).rounded()))
        guard heldCount < items.count else {
            throw ValidationError("--val-split \(fraction) of \(items.count) \(what) leaves nothing to train on")
        }
        var generator = SeededGenerator(seed: seed ^ 0x5EED_0F_5711_7000)
        var order = Array(items.indices)
        for i in stride(from: order.count - 1, to: 0, by: -1) { order.swapAt(i, Int(generator.next() % UInt64(i + 1))) }
        let held = Set(order.prefix(heldCount))
        return (items.indices.filter { !held.contains($0) }.map { items[$0] }, items.indices.filter(held.contains).map { items[$0] })
    }

    func tokenize(_ path: String) throws -> [Int] { try tokenizeFile(path, with: loadTokenizer(folder: model)) }

    func windows(of path: String) throws -> [[Int]] {
        try TrainingData(stream: tokenize(path), seq: seq, batch: batch, seed: 0).windows
    }
}
