// Optimizer runs shared by the CPU and OpenCL tests: several parameters of different sizes (the largest neither
// first nor last, so paged AdamW's staging must be sized to it), gradients that change every step, clipping scales.
// Results come back as bit patterns, so "equal" means bit for bit.
import Foundation
import SwiftLoRA

public enum OptimizerCase {
    /// Parameter shapes: 119, 165, 1, 390, 68, 256 and 250 elements (two of the largest are fewer than all of them).
    public static let shapes: [[Int]] = [[7, 17], [33, 5], [1], [130, 3], [2, 2, 17], [64, 4], [50, 5]]

    /// The largest parameter's element count.
    public static var largest: Int { shapes.map { $0.reduce(1, *) }.max()! }

    /// Every parameter's and moment's bits after each of `steps` updates of `kind` on `backend`, and the optimizer.
    public static func run(_ kind: Optimizer.Kind, on backend: any Backend, steps: Int)
        throws -> (optimizer: Optimizer, bits: [[UInt32]]) {
        let parameters = try shapes.enumerated().map { index, shape in
            let count = shape.reduce(1, *)
            return TrainableParameter(name: "p\(index)", value: try backend.upload(randomValues(count, seed: 100 + UInt64(index)), shape: shape),
                                      gradient: try backend.zeros(shape))
        }
        let optimizer = try Optimizer(kind, parameters: parameters)
        optimizer.weightDecay = 0.1
        var bits: [[UInt32]] = []
        for step in 0..<steps {
            for (index, p) in parameters.enumerated() {
                let g = randomValues(p.value.count, seed: 1000 * UInt64(step) + UInt64(index)).map { $0 * Float(step + 1) }
                try backend.copy(backend.upload(g, shape: p.value.shape), to: p.gradient)
            }
            try optimizer.update(learningRate: 0.01 * Float(step + 1), gradientScale: step % 2 == 0 ? 1 : 0.37)
            var state: [Float] = []
            for (index, p) in parameters.enumerated() {
                state += try p.value.toArray()
                if kind.keepsMoments { state += try optimizer.moments[index].m.toArray() + optimizer.moments[index].v.toArray() }
            }
            bits.append(state.map(\.bitPattern))
        }
        return (optimizer, bits)
    }

    /// A LoRA trainer (every linear, dropout 0.1) on a random one-layer, 32-wide GPT-2 with `kind`, 8 steps of lr 1e-2.
    public static func trainer(_ kind: Optimizer.Kind, on backend: any Backend) throws -> Trainer {
        let model = try GPT2Model(config: GPT2Config(vocabSize: 256, positions: 32, width: 32, layers: 1, heads: 2), seed: 5, backend: backend)
        try model.applyLoRA(LoRAConfig(rank: 4, alpha: 8, targets: .allLinear, dropout: 0.1), seed: 3)
        var options = TrainingOptions(steps: 8)
        (options.optimizer, options.learningRate) = (kind, 1e-2)
        let stream = (0..<600).map { ($0 * 7919) % 256 }
        return try Trainer(model: model, data: TrainingData(stream: stream, seq: 15, batch: 4, seed: 9), options: options)
    }

    /// Runs 8 steps with adamw and with paged_adamw, checkpointing at step 4, then resumes each checkpoint with each
    /// of the two: the loss bits of every step of the whole runs, and of steps 5-8 of each resumed run.
    public static func checkpointRoundTrips(on backend: any Backend) throws
        -> (whole: [Optimizer.Kind: [UInt32]], resumed: [(written: Optimizer.Kind, resumedAs: Optimizer.Kind, losses: [UInt32])]) {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("lora-paged-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let kinds: [Optimizer.Kind] = [.adamw, .pagedAdamW]
        var whole: [Optimizer.Kind: [UInt32]] = [:]
        for kind in kinds {
            let run = try trainer(kind, on: backend)
            for step in 1...8 {
                whole[kind, default: []].append(try run.trainStep().loss.bitPattern)
                if step == 4 { try run.saveCheckpoint(to: "\(directory)/\(kind.rawValue).safetensors") }
            }
        }
        var resumed: [(Optimizer.Kind, Optimizer.Kind, [UInt32])] = []
        for written in kinds {
            for resumedAs in kinds {
                let run = try trainer(resumedAs, on: backend)
                try run.loadCheckpoint(from: "\(directory)/\(written.rawValue).safetensors")
                resumed.append((written, resumedAs, try (5...8).map { _ in try run.trainStep().loss.bitPattern }))
            }
        }
        return (whole, resumed)
    }
}
