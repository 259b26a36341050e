// A run that can stop and resume: a stop request ends `Trainer.run` after the step in flight with a checkpoint the
// run continues from exactly; a resume with other settings refuses and names each one; a checkpoint from before the
// settings were recorded still resumes.
import Foundation
import LoRATestSupport
import SwiftLoRA
import Testing

@Suite("Stopping and resuming a run")
struct StoppableRunTests {
    static let stream = Array(repeating: Array(0..<400), count: 3).joined().map { ($0 * 7919) % 400 }

    /// A temporary checkpoint path, removed by the caller's `defer`.
    static func temporaryPath() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("lora-stop-\(UUID().uuidString).safetensors").path
    }

    static func trainer(rank: Int = 4, alpha: Float = 8, seq: Int = 15, steps: Int = 12,
                        settings: [String: String] = ["--data": "/data/a.txt"]) throws -> Trainer {
        let model = try GPT2Model(folder: fixtures, backend: CPUBackend.shared)
        try model.applyLoRA(LoRAConfig(rank: rank, alpha: alpha, dropout: 0.1), seed: 3)
        let trainer = try Trainer(model: model, data: TrainingData(stream: stream, seq: seq, batch: 4, seed: 9),
                                  options: TrainingOptions(steps: steps))
        trainer.settings = settings
        return trainer
    }

    @Test("a stop request ends the run after the step in flight with a checkpoint; resuming it gives the uninterrupted run's losses")
    func stopAndResume() throws {
        let path = Self.temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: path) }
        var whole: [Float] = []
        #expect(try Self.trainer().run { whole.append($0.loss) } == .finished)

        let first = try Self.trainer()
        var losses: [Float] = []
        let end = try first.run(checkpointPath: path, shouldStop: { losses.count >= 5 }) { losses.append($0.loss) }
        #expect(end == .stopped && first.step == 5 && FileManager.default.fileExists(atPath: path))

        let second = try Self.trainer()
        try second.loadCheckpoint(from: path)
        #expect(second.step == 5)
        #expect(try second.run(checkpointPath: path) { losses.append($0.loss) } == .finished)
        #expect(losses.map(\.bitPattern) == whole.map(\.bitPattern))
        // The stopped run's checkpoint was brought to the last step, so it never goes stale.
        let third = try Self.trainer()
        try third.loadCheckpoint(from: path)
        #expect(third.step == 12)
    }

    @Test("resuming with other settings refuses and names each: rank, alpha, data, its tokens, sequence length")
    func contradictingSettings() throws {
        let path = Self.temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let original = try Self.trainer()
        _ = try original.trainStep()
        try original.saveCheckpoint(to: path)

        let other = try Self.trainer(rank: 8, alpha: 16, seq: 14, settings: ["--data": "/data/b.txt"])
        do {
            try other.loadCheckpoint(from: path)
            Issue.record("a checkpoint with other settings was resumed")
        } catch TrainingError.checkpointMismatch(let reported, let mismatches) {
            #expect(reported == path)
            #expect(mismatches.map(\.setting) == ["--rank", "--alpha", "--data", "the training tokens"])
            #expect(mismatches.first == TrainingError.SettingMismatch(setting: "--rank", run: "8", checkpoint: "4"))
            let text = "\(TrainingError.checkpointMismatch(path: reported, mismatches))"
            #expect(text.contains("--data is /data/b.txt here but /data/a.txt in the checkpoint"), "\(text)")
        }
        #expect(other.step == 0)  // nothing was restored

        // The same settings resume.
        let same = try Self.trainer()
        try same.loadCheckpoint(from: path)
        #expect(same.step == 1)
    }

    @Test("a checkpoint from before settings were recorded still resumes; its adapter settings are still checked")
    func olderCheckpoint() throws {
        let (path, older) = (Self.temporaryPath(), Self.temporaryPath())
        defer { for p in [path, older] { try? FileManager.default.removeItem(atPath: p) } }
        let original = try Self.trainer()
        _ = try original.trainStep()
        try original.saveCheckpoint(to: path)
        let file = try SafeTensorsFile(path: path)
        #expect(file.metadata["settings"] != nil)
        try SafeTensorsWriter.write(try file.names.map { .float32($0, shape: try file.entry($0).shape, values: try file.floats($0)) },
                                    metadata: file.metadata.filter { $0.key != "settings" }, to: older)

        let resumed = try Self.trainer(settings: ["--data": "/data/elsewhere.txt"])  // not recorded: not compared
        try resumed.loadCheckpoint(from: older)
        #expect(resumed.step == 1)
        #expect(throws: TrainingError.checkpointMismatch(path: older, [.init(setting: "--rank", run: "8", checkpoint: "4")])) {
            try Self.trainer(rank: 8).loadCheckpoint(from: older)
        }
    }
}
