// The training loop: forward and backward on each batch, gradient clipping, the learning-rate schedule, an
// optimizer step; eval passes, checkpoints and a line of metrics per step. A NaN or infinite loss stops the run
// before that step's update, so the last checkpoint stays good. With a process group (MPI), each rank trains on
// its rows of every batch and the gradients are averaged across ranks (Trainer+DataParallel.swift); rank 0 alone
// writes checkpoints.
import Foundation
import LoRAFormats
import LoRAModels
import LoRARuntime

/// The settings of a run (the `lora train` flags that shape the math).
public struct TrainingOptions: Sendable, Equatable {
    public enum Schedule: String, Sendable, CaseIterable { case constant, linear, cosine }

    public var steps: Int
    public var learningRate: Float = 1e-3
    public var schedule: Schedule = .constant
    public var warmup = 0
    public var optimizer: Optimizer.Kind = .adamw
    public var weightDecay: Float = 0.01
    public var beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8
    /// 0: no clipping.
    public var maxGradNorm: Float = 1
    /// Evaluate every N steps (0: only after the last step); `Trainer.run` does.
    public var evalEvery = 0
    /// Write a checkpoint every N steps (0: none); `Trainer.run` does.
    public var checkpointEvery = 0
    /// Stop after this many evaluations in a row without a new best eval loss (0: never stop early).
    public var earlyStoppingPatience = 0

    public init(steps: Int) { self.steps = steps }

    /// The learning rate of update `step` (0-based), as transformers' schedulers with warmup give it.
    public func learningRate(at step: Int) -> Float {
        if step < warmup { return learningRate * Float(step) / Float(max(1, warmup)) }
        let progress = Float(step - warmup) / Float(max(1, steps - warmup))
        switch schedule {
        case .constant: return learningRate
        case .linear: return learningRate * max(0, 1 - progress)
        case .cosine: return learningRate * 0.5 * (1 + Foundation.cos(Float.pi * progress))
        }
    }
}

/// One step's figures, as metrics.jsonl records them.
public struct StepRecord: Sendable {
    public let step: Int
    public let loss: Float, learningRate: Float, gradientNorm: Float, tokensPerSecond: Double
    public var evalLoss: Float?
    /// This step's eval loss is the best so far (strictly lower than every earlier one).
    public var isBestEval = false

    public init(step: Int, loss: Float, learningRate: Float, gradientNorm: Float, tokensPerSecond: Double, evalLoss: Float? = nil) {
        (self.step, self.loss, self.learningRate, self.gradientNorm) = (step, loss, learningRate, gradientNorm)
        (self.tokensPerSecond, self.evalLoss) = (tokensPerSecond, evalLoss)
    }
}

/// Runs training on a model with adapters (or in full fine-tuning).
public final class Trainer {
    public let model: any LanguageModel
    public let options: TrainingOptions
    public let optimizer: Optimizer
    public internal(set) var data: TrainingData
    public let evalData: [[Int]]?
    /// Labels of `evalData` (unshifted, -100: no loss); nil when the labels are the tokens themselves.
    public let evalLabels: [[Int]]?
    /// Completed updates.
    public internal(set) var step = 0
    /// The lowest eval loss so far and its step.
    public internal(set) var bestEval: (step: Int, loss: Float)?
    /// Evaluations since the last new best (what `earlyStoppingPatience` counts).
    public internal(set) var evaluationsWithoutImprovement = 0
    /// The run ended because the eval loss stopped improving.
    public internal(set) var stoppedEarly = false
    /// What this run was started with, as its caller names it (`lora train`: `--model`, `--data`, `--seq`, ... with
    /// their values): a checkpoint records these, and resuming refuses one whose values differ.
    public var settings: [String: String] = [:]
    /// The ranks this trainer trains with (nil: alone). `data.batch` is then the global batch, world size × each
    /// rank's rows.
    public let group: (any ProcessGroup)?
    /// Seconds spent exchanging gradients (gathering, the all-reduce, scattering back), summed over the steps.
    public internal(set) var communicationSeconds = 0.0
    /// Benchmarks: meet the other ranks (a one-element all-reduce) before each exchange, so `communicationSeconds`
    /// holds the exchange alone and `waitSeconds` the wait for the slowest rank's backward. Off in training (it costs
    /// one more collective per step).
    public var timesWaitApart = false
    /// Seconds spent waiting for other ranks before exchanges (only with `timesWaitApart`).
    public internal(set) var waitSeconds = 0.0
    var exchange: GradientExchange?

    /// - Parameter group: the ranks of a data-parallel job; `data.batch` must then split evenly over them (each
    ///   rank takes `data.batch / group.size` rows of every batch).
    public init(model: any LanguageModel, data: TrainingData, evalData: [[Int]]? = nil, evalLabels: [[Int]]? = nil,
                options: TrainingOptions, group: (any ProcessGroup)? = nil) throws {
        if let evalLabels {
            guard let evalData, evalLabels.count == evalData.count, zip(evalData, evalLabels).allSatisfy({ $0.count == $1.count }) else {
                throw TrainingError.invalidSetup("eval labels must match the eval sequences row for row")
            }
        }
        self.evalLabels = evalLabels
        guard options.steps >= 1 else { throw TrainingError.invalidSetup("a run needs at least 1 step, got \(options.steps)") }
        let ranks = group?.size ?? 1
        guard data.batch % ranks == 0 else {
            throw TrainingError.invalidSetup(data.fixed
                ? "the \(data.batch) rows of the token array cannot be split evenly over \(ranks) ranks; give a multiple of \(ranks) rows"
                : "a global batch of \(data.batch) cannot be split evenly over \(ranks) ranks")
        }
        self.group = group
        // Refuse a run that cannot fit before any work is done (a host would otherwise swap or be OOM-killed).
        let largest = data.windows.max(by: { $0.count < $1.count })?.count ?? 0
        let needed = model.trainingStepBytes(batch: data.batch / ranks, length: largest)
        if let capacity = model.backend.memoryCapacity, needed > capacity {
            throw TrainingError.invalidSetup(String(format: "a step of %d × %d tokens needs about %.1f GB, but %@ has %.1f GB available; use fewer or shorter sequences per batch",
                                         data.batch / ranks, largest, Double(needed) / 1e9, model.backend.name, Double(capacity) / 1e9))
        }
        (self.model, self.data, self.evalData, self.options) = (model, data, evalData, options)
        optimizer = try Optimizer(options.optimizer, parameters: model.trainableParameters)
        (optimizer.beta1, optimizer.beta2, optimizer.epsilon, optimizer.weightDecay) =
            (options.beta1, options.beta2, options.epsilon, options.weightDecay)
    }

    /// Under a group: some rank asked to stop (the flag travels with the last step's gradients).
    public internal(set) var stopAgreed = false

    /// One update; throws `TrainingError.nonFinite` (before updating) when the loss is NaN or infinite.
    /// - Parameter stopRequested: under a group, this rank's wish to stop after this step; every rank learns whether
    ///   any had it (`stopAgreed`), so all stop after the same step.
    public func trainStep(stopRequested: Bool = false) throws -> StepRecord {
        let start = DispatchTime.now().uptimeNanoseconds
        let batch = data.nextBatch()
        model.training = true
        try model.zeroGradients()
        let loss: Float
        if let group {
            let reduced = try dataParallelLoss(batch, group: group, stopRequested: stopRequested)
            (loss, stopAgreed) = (reduced.loss, reduced.stop)
        } else {
            loss = try model.loss(batch.tokens, labels: batch.labels, segments: batch.segments, gradients: true).loss
        }
        guard loss.isFinite else { throw TrainingError.nonFinite(step: step + 1, loss: loss) }
        let norm = try optimizer.gradientNorm()
        guard norm.isFinite else { throw TrainingError.nonFinite(step: step + 1, loss: norm) }
        // torch.nn.utils.clip_grad_norm_: scale by max/(norm + 1e-6) when that is below 1.
        let clip = options.maxGradNorm > 0 ? min(1, options.maxGradNorm / (norm + 1e-6)) : 1
        let lr = options.learningRate(at: step)
        try optimizer.update(learningRate: lr, gradientScale: clip)
        try model.backend.synchronize()
        step += 1
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        return StepRecord(step: step, loss: loss, learningRate: lr, gradientNorm: norm, tokensPerSecond: Double(batch.realTokens) / seconds)
    }

    /// The mean loss over the eval sequences (no dropout, no gradients), `data.batch` at a time: with labels, the
    /// token-weighted mean over every trained target (packed as the training data is, which gives the same value).
    public func evaluate() throws -> Float? {
        if let group { return try dataParallelEvaluate(group: group) }
        guard let evalData, !evalData.isEmpty else { return nil }
        if let evalLabels {
            return Float(try model.meanLoss(evalData, labels: evalLabels, batch: data.batch, padID: data.padID,
                                            packing: data.packedLength).loss)
        }
        return Float(try model.meanLoss(evalData, batch: data.batch))
    }

    /// Records an eval loss for early stopping and the best adapter; returns whether it is a new best.
    @discardableResult
    public func noteEvaluation(_ loss: Float, step: Int) -> Bool {
        guard loss.isFinite else { evaluationsWithoutImprovement += 1; return false }
        if let best = bestEval, loss >= best.loss {
            evaluationsWithoutImprovement += 1
            return false
        }
        bestEval = (step, loss)
        evaluationsWithoutImprovement = 0
        return true
    }

    /// How `run` ended.
    public enum RunEnd: Sendable, Equatable {
        /// Every step up to `options.steps` ran.
        case finished
        /// `shouldStop` asked for a stop; the checkpoint (when `run` had a path) holds the last completed step.
        case stopped
    }

    /// Trains until `options.steps` (or until `earlyStoppingPatience` evaluations in a row bring no new best),
    /// evaluating every `evalEvery` steps and after the last, and writing a checkpoint
    /// to `checkpointPath` every `checkpointEvery` steps and after the last step (after `onStep` has seen the record,
    /// so a checkpoint never runs ahead of what was reported); with `checkpointEvery` 0, after the last step only
    /// when `checkpointPath` already holds one (a stopped run's, which would otherwise go stale and make a later
    /// resume redo the steps). A non-finite loss throws `TrainingError.nonFinite` before its update.
    /// `shouldStop` is asked before each step (a signal handler's flag: a step in flight always completes); when it
    /// says yes, the checkpoint is written, whatever `checkpointEvery` says, and `run` returns `.stopped`.
    /// Under a group, rank 0 alone writes checkpoints (others' `checkpointPath` is ignored), and a stop asked of any
    /// rank stops every rank after the same step.
    @discardableResult
    public func run(checkpointPath: String? = nil, shouldStop: () -> Bool = { false },
                    onStep: (StepRecord) throws -> Void) throws -> RunEnd {
        let checkpointPath = (group?.rank ?? 0) == 0 ? checkpointPath : nil
        var checkpointed = -1
        let finalCheckpoint = options.checkpointEvery > 0 || checkpointPath.map { FileManager.default.fileExists(atPath: $0) } == true
        while step < options.steps {
            if group == nil ? shouldStop() : stopAgreed {
                if let checkpointPath, checkpointed != step { try saveCheckpoint(to: checkpointPath) }
                return .stopped
            }
            var record = try trainStep(stopRequested: group != nil && shouldStop())
            if options.evalEvery > 0 && record.step % options.evalEvery == 0 || record.step == options.steps {
                record.evalLoss = try evaluate()
                if let loss = record.evalLoss { record.isBestEval = noteEvaluation(loss, step: record.step) }
            }
            try onStep(record)
            if let checkpointPath, options.checkpointEvery > 0 && record.step % options.checkpointEvery == 0
                || finalCheckpoint && record.step == options.steps {
                try saveCheckpoint(to: checkpointPath)
                checkpointed = record.step
            }
            if record.evalLoss != nil && options.earlyStoppingPatience > 0
                && evaluationsWithoutImprovement >= options.earlyStoppingPatience {
                stoppedEarly = true
                break
            }
        }
        return .finished
    }
}

/// Why a run stopped.
public enum TrainingError: Error, CustomStringConvertible, Equatable {
    case nonFinite(step: Int, loss: Float)
    /// The run cannot start as set up (no steps, too little memory, too little data), with the reason.
    case invalidSetup(String)
    /// A checkpoint written with other settings than this run's: each setting (a flag's name, or what it names) with
    /// this run's value and the checkpoint's.
    case checkpointMismatch(path: String, [SettingMismatch])

    /// One setting a resumed run contradicts.
    public struct SettingMismatch: Sendable, Equatable {
        public let setting: String, run: String, checkpoint: String
        public init(setting: String, run: String, checkpoint: String) { (self.setting, self.run, self.checkpoint) = (setting, run, checkpoint) }
    }

    public var description: String {
        switch self {
        case .invalidSetup(let reason): reason
        case .checkpointMismatch(let path, let mismatches):
            "\(path) was written by a run with other settings: "
                + mismatches.map { "\($0.setting) is \($0.run) here but \($0.checkpoint) in the checkpoint" }.joined(separator: "; ")
                + ". Resume with the checkpoint's settings, or train into another --out"
        case .nonFinite(let step, let loss):
            "step \(step): the loss or gradient norm is \(loss); stopped before updating (lower the learning rate, or check the data)"
        }
    }
}
