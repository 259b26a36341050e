// The trainer's parts: schedules, data order and position, the NaN guard, checkpoints that restore a run exactly.
import Foundation
import LoRATestSupport
import SwiftLoRA
import Testing

@Suite("Trainer")
struct TrainerTests {
    @Test("learning-rate schedules follow transformers' warmup + constant/linear/cosine")
    func schedules() {
        var o = TrainingOptions(steps: 110)
        (o.learningRate, o.warmup) = (1, 10)
        #expect(o.learningRate(at: 0) == 0 && o.learningRate(at: 5) == 0.5 && o.learningRate(at: 10) == 1)
        #expect(o.learningRate(at: 109) == 1)
        o.schedule = .linear
        #expect(o.learningRate(at: 60) == 0.5 && abs(o.learningRate(at: 110)) < 1e-6)
        o.schedule = .cosine
        #expect(abs(o.learningRate(at: 60) - 0.5) < 1e-6 && o.learningRate(at: 10) == 1 && abs(o.learningRate(at: 110)) < 1e-6)
    }

    @Test("windows are shuffled per epoch by the seed, every window once per epoch, and the position restores")
    func dataOrder() throws {
        var data = try TrainingData(stream: Array(0..<100), seq: 9, batch: 3, seed: 4)
        #expect(data.windows.count == 10 && data.batchesPerEpoch == 4)
        var seen: [[Int]] = []
        for _ in 0..<4 { seen += data.next() }
        #expect(Set(seen.map { $0[0] }) == Set(stride(from: 0, to: 100, by: 10)) && data.epoch == 1 && data.index == 0)
        var copy = try TrainingData(stream: Array(0..<100), seq: 9, batch: 3, seed: 4)
        (copy.epoch, copy.index) = (data.epoch, data.index)
        #expect(copy.next() == data.next())
        #expect(throws: TrainingError.self) { try TrainingData(stream: [1, 2, 3], seq: 9, batch: 3, seed: 4) }
    }

    @Test("a loss that turns NaN or infinite stops the run before the update, naming the step")
    func nonFiniteGuard() throws {
        let model = try GPT2Model(folder: fixtures, backend: CPUBackend.shared)
        try model.loadAdapter(folder: fixtures + "/adapter")
        var options = TrainingOptions(steps: 10)
        (options.learningRate, options.maxGradNorm, options.optimizer) = (1e30, 0, .sgd)
        let trainer = try Trainer(model: model, data: try TrainingData(fixedBatch: Expected().tokens), options: options)
        var error: TrainingError?
        for _ in 0..<10 {
            do { _ = try trainer.trainStep() } catch let e as TrainingError { error = e; break }
        }
        guard case .nonFinite(let step, _) = try #require(error) else { return }
        #expect(step >= 2 && trainer.step == step - 1)
    }

    @Test("a checkpoint restores weights, moments, step, data position and dropout seeds: the run continues identically")
    func checkpointResume() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("lora-ckpt-\(UUID().uuidString).safetensors").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let stream = Array(repeating: Array(0..<400), count: 3).joined().map { ($0 * 7919) % 400 }
        func trainer() throws -> Trainer {
            let model = try GPT2Model(folder: fixtures, backend: CPUBackend.shared)
            try model.applyLoRA(LoRAConfig(rank: 4, alpha: 8, dropout: 0.2), seed: 3)
            return try Trainer(model: model, data: TrainingData(stream: stream, seq: 15, batch: 4, seed: 9), options: TrainingOptions(steps: 30))
        }
        let whole = try trainer()
        var losses: [Float] = []
        for step in 1...30 {
            losses.append(try whole.trainStep().loss)
            if step == 12 { try whole.saveCheckpoint(to: path) }
        }
        let resumed = try trainer()
        try resumed.loadCheckpoint(from: path)
        #expect(resumed.step == 12)
        for step in 13...30 { #expect(try resumed.trainStep().loss == losses[step - 1], "step \(step)") }
        // Other adapter settings cannot resume from it.
        let other = try GPT2Model(folder: fixtures, backend: CPUBackend.shared)
        try other.applyLoRA(LoRAConfig(rank: 2, alpha: 8))
        let mismatched = try Trainer(model: other, data: TrainingData(stream: stream, seq: 15, batch: 4, seed: 9), options: TrainingOptions(steps: 30))
        #expect(throws: TrainingError.checkpointMismatch(path: path, [.init(setting: "--rank", run: "2", checkpoint: "4"),
                                                                      .init(setting: "--dropout", run: "0", checkpoint: "0.2")])) {
            try mismatched.loadCheckpoint(from: path)
        }
    }
}
