// The training loop: forward and backward on each batch, gradient clipping, the learning-rate schedule, an
// optimizer step; eval passes, checkpoints and a line of metrics per step. A NaN or infinite loss stops the run
// before that step's update, so the last checkpoint stays good.
import Foundation
import LoRAFormats
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
    public var evalEvery = 0
    public var checkpointEvery = 0

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

    public init(step: Int, loss: Float, learningRate: Float, gradientNorm: Float, tokensPerSecond: Double, evalLoss: Float? = nil) {
        (self.step, self.loss, self.learningRate, self.gradientNorm) = (step, loss, learningRate, gradientNorm)
        (self.tokensPerSecond, self.evalLoss) = (tokensPerSecond, evalLoss)
    }
}

/// Runs training on a GPT-2 model with adapters.
public final class Trainer {
    public let model: GPT2Model
    public let options: TrainingOptions
    public let optimizer: Optimizer
    public private(set) var data: TrainingData
    public let evalData: [[Int]]?
    /// Completed updates.
    public private(set) var step = 0

    public init(model: GPT2Model, data: TrainingData, evalData: [[Int]]? = nil, options: TrainingOptions) throws {
        guard options.steps >= 1 else { throw LoRAConfigError("--steps must be at least 1") }
        // Refuse a run that cannot fit before any work is done (a host would otherwise swap or be OOM-killed).
        let largest = data.windows.max(by: { $0.count < $1.count })?.count ?? 0
        let needed = model.trainingStepBytes(batch: data.batch, length: largest)
        if let capacity = model.backend.memoryCapacity, needed > capacity {
            throw LoRAConfigError(String(format: "a step of %d × %d tokens needs about %.1f GB, but %@ has %.1f GB available; lower --batch or --seq",
                                         data.batch, largest, Double(needed) / 1e9, model.backend.name, Double(capacity) / 1e9))
        }
        (self.model, self.data, self.evalData, self.options) = (model, data, evalData, options)
        optimizer = try Optimizer(options.optimizer, parameters: model.trainableParameters)
        (optimizer.beta1, optimizer.beta2, optimizer.epsilon, optimizer.weightDecay) =
            (options.beta1, options.beta2, options.epsilon, options.weightDecay)
    }

    /// One update; throws `TrainingError.nonFinite` (before updating) when the loss is NaN or infinite.
    public func trainStep() throws -> StepRecord {
        let start = DispatchTime.now().uptimeNanoseconds
        let batch = data.next()
        model.training = true
        try model.zeroGradients()
        let loss = try model.loss(batch, gradients: true)
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
        let tokens = batch.reduce(0) { $0 + $1.count }
        return StepRecord(step: step, loss: loss, learningRate: lr, gradientNorm: norm, tokensPerSecond: Double(tokens) / seconds)
    }

    /// The mean loss over the eval sequences (no dropout, no gradients).
    public func evaluate() throws -> Float? {
        guard let evalData, !evalData.isEmpty else { return nil }
        model.training = false
        defer { model.training = true }
        var (total, count) = (0.0, 0)
        for group in Dictionary(grouping: evalData, by: \.count).values {
            for start in stride(from: 0, to: group.count, by: max(1, data.batch)) {
                let part = Array(group[start..<min(group.count, start + max(1, data.batch))])
                let predictions = part.count * (part[0].count - 1)
                total += Double(try model.loss(part)) * Double(predictions)
                count += predictions
            }
        }
        return Float(total / Double(count))
    }

    // MARK: - Checkpoints

    /// Writes adapter weights, optimizer moments, step, data position and dropout seeds to one safetensors file,
    /// through a temporary name and a rename: a kill at any moment leaves the previous checkpoint or this one.
    public func saveCheckpoint(to path: String) throws {
        var items: [SafeTensorsWriter.Item] = []
        for (index, p) in optimizer.parameters.enumerated() {
            items.append(.float32(p.name, shape: p.value.shape, values: try p.value.toArray()))
            if optimizer.kind == .adamw {
                items.append(.float32("optimizer.m." + p.name, shape: p.value.shape, values: try optimizer.moments[index].m.toArray()))
                items.append(.float32("optimizer.v." + p.name, shape: p.value.shape, values: try optimizer.moments[index].v.toArray()))
            }
        }
        let seeds = model.loraLayers.map { String($0.layer.nextDropoutSeed) }.joined(separator: ",")
        try SafeTensorsWriter.write(items, metadata: [
            "step": String(step), "optimizer_step": String(optimizer.step), "epoch": String(data.epoch),
            "index": String(data.index), "dropout_seeds": seeds, "optimizer": optimizer.kind.rawValue,
            "trains": trainedWhat,
        ], to: path)
    }

    /// What this run trains, as a checkpoint records it: "full", or the adapter's config.
    var trainedWhat: String { model.loraConfig.map { PEFTAdapter.configJSON($0).serialized() } ?? "full" }

    /// Restores a checkpoint written by `saveCheckpoint` for the same adapter settings.
    public func loadCheckpoint(from path: String) throws {
        let file = try SafeTensorsFile(path: path)
        func invalid(_ reason: String) -> FormatError { .invalid(path: path, reason: reason) }
        guard file.metadata["trains"] == trainedWhat else {
            throw invalid("it was written for other settings (full fine-tuning, or the adapter's rank, alpha, targets, dropout); resume with the same ones")
        }
        guard file.metadata["optimizer"] == optimizer.kind.rawValue else {
            throw invalid("it was written by \(file.metadata["optimizer"] ?? "?"), not \(optimizer.kind.rawValue)")
        }
        guard let step = file.metadata["step"].flatMap(Int.init), let optimizerStep = file.metadata["optimizer_step"].flatMap(Int.init),
              let epoch = file.metadata["epoch"].flatMap(Int.init), let index = file.metadata["index"].flatMap(Int.init),
              let seeds = file.metadata["dropout_seeds"]?.split(separator: ",").map({ UInt64($0) }),
              seeds.count == model.loraLayers.count, seeds.allSatisfy({ $0 != nil }) else {
            throw invalid("its step, data position or dropout seeds are missing or malformed")
        }
        let backend = model.backend
        for (i, p) in optimizer.parameters.enumerated() {
            var targets = [(p.name, p.value)]
            if optimizer.kind == .adamw {
                targets += [("optimizer.m." + p.name, optimizer.moments[i].m), ("optimizer.v." + p.name, optimizer.moments[i].v)]
            }
            for (name, tensor) in targets {
                guard try file.entry(name).shape == tensor.shape else { throw invalid("'\(name)' has another shape than this run's") }
                try backend.copy(backend.upload(try file.floats(name), shape: tensor.shape), to: tensor)
            }
        }
        for ((_, layer), seed) in zip(model.loraLayers, seeds) { layer.nextDropoutSeed = seed! }
        optimizer.restore(step: optimizerStep)
        (self.step, data.epoch, data.index) = (step, epoch, index)
    }
}

/// Why a run stopped.
public enum TrainingError: Error, CustomStringConvertible, Equatable {
    case nonFinite(step: Int, loss: Float)

    public var description: String {
        switch self {
        case .nonFinite(let step, let loss):
            "step \(step): the loss or gradient norm is \(loss); stopped before updating (lower --lr, or check the data)"
        }
    }
}
