// GPT-2 with gradient checkpointing: the same losses, gradients and updates bit for bit as without it (adapters
// with dropout on every linear, and full fine-tuning), on the CPU and on OpenCL; the step estimate shrinks.
import Foundation
import LoRATestSupport
import SwiftLoRA
import Testing

/// The gpt2-tiny fixture on `backend`: LoRA with dropout on every linear layer, or every weight trainable.
func checkpointingGPT2(full: Bool, backend: any Backend) throws -> any LanguageModel {
    let model = try GPT2Model(folder: fixtures, backend: backend)
    if full { try model.enableFullTraining() } else {
        try model.applyLoRA(LoRAConfig(rank: 4, alpha: 8, targets: .allLinear, dropout: 0.2), seed: 5)
    }
    return model
}

@Suite("GPT-2 gradient checkpointing")
struct GPT2GradientCheckpointingTests {
    @Test("gradient checkpointing: losses, gradients and updates bit for bit as without it (LoRA with dropout; full)", arguments: [false, true])
    func sameValues(full: Bool) throws {
        let differences = try gradientCheckpointingDifferences(tokens: Expected().tokens) {
            try checkpointingGPT2(full: full, backend: CPUBackend.shared)
        }
        #expect(differences.isEmpty, "\(differences)")
    }

    @Test("gradient checkpointing: the step's memory estimate keeps every block's input and one block's activations")
    func estimate() throws {
        let model = try checkpointingGPT2(full: false, backend: CPUBackend.shared)
        let plain = model.trainingStepBytes(batch: 8, length: 64)
        model.gradientCheckpointing = true
        let checkpointed = model.trainingStepBytes(batch: 8, length: 64)
        #expect(checkpointed < plain && checkpointed > model.weightBytes, "\(checkpointed) vs \(plain)")
    }
}

@Suite("OpenCL GPT-2 gradient checkpointing", .enabled(if: TestDevices.runOpenCL, "\(TestDevices.skipReason)"))
struct OpenCLGPT2GradientCheckpointingTests {
    @Test("OpenCL gradient checkpointing (GPT-2): losses, gradients and updates bit for bit as without it", arguments: [false, true])
    func sameValues(full: Bool) throws {
        let backend = try TestDevices.openCL.get()
        let differences = try gradientCheckpointingDifferences(tokens: Expected().tokens) {
            try checkpointingGPT2(full: full, backend: backend)
        }
        #expect(differences.isEmpty, "\(differences)")
    }
}
