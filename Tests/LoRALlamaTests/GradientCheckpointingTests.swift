// The Llama family with gradient checkpointing: the same losses, gradients and updates bit for bit as without it
// (adapters with dropout on every linear, and full fine-tuning), on the CPU and on OpenCL; Qwen3's q/k norms too.
import Foundation
import LoRATestSupport
import SwiftLoRA
import Testing

/// A fixture model on `backend`: LoRA with dropout on every linear layer, or every weight trainable.
func checkpointingLlama(_ name: String, full: Bool, backend: any Backend) throws -> any LanguageModel {
    let model = try LlamaModel(folder: fixtureRoot + "/" + name, backend: backend)
    if full { try model.enableFullTraining() } else {
        try model.applyLoRA(LoRAConfig(rank: 4, alpha: 8, targets: .allLinear, dropout: 0.2), seed: 5)
    }
    return model
}

/// (fixture, full fine-tuning) pairs: Llama both ways, Qwen3 (q/k norms) with adapters.
let checkpointingCases = [("llama-tiny", false), ("llama-tiny", true), ("qwen3-tiny", false)]

@Suite("Llama gradient checkpointing")
struct LlamaGradientCheckpointingTests {
    @Test("gradient checkpointing: losses, gradients and updates bit for bit as without it", arguments: checkpointingCases)
    func sameValues(name: String, full: Bool) throws {
        let tokens = try LlamaFixture(name).tokens
        let differences = try gradientCheckpointingDifferences(tokens: tokens) {
            try checkpointingLlama(name, full: full, backend: CPUBackend.shared)
        }
        #expect(differences.isEmpty, "\(differences)")
    }

    @Test("gradient checkpointing: the step's memory estimate keeps every layer's input and one layer's activations")
    func estimate() throws {
        let model = try LlamaModel(folder: fixtureRoot + "/llama-tiny", backend: CPUBackend.shared)
        let plain = model.trainingStepBytes(batch: 8, length: 256)
        model.gradientCheckpointing = true
        let checkpointed = model.trainingStepBytes(batch: 8, length: 256)
        #expect(checkpointed < plain && checkpointed > model.weightBytes, "\(checkpointed) vs \(plain)")
    }
}

@Suite("OpenCL Llama gradient checkpointing", .enabled(if: TestDevices.runOpenCL, "\(TestDevices.skipReason)"))
struct OpenCLLlamaGradientCheckpointingTests {
    @Test("OpenCL gradient checkpointing (Llama family): losses, gradients and updates bit for bit as without it", arguments: checkpointingCases)
    func sameValues(name: String, full: Bool) throws {
        let backend = try TestDevices.openCL.get()
        let tokens = try LlamaFixture(name).tokens
        let differences = try gradientCheckpointingDifferences(tokens: tokens) {
            try checkpointingLlama(name, full: full, backend: backend)
        }
        #expect(differences.isEmpty, "\(differences)")
    }
}
