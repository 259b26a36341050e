// Packing (`--packing`): the first-fit-decreasing windows, their labels and segments; and the models on packed rows:
// every example's logits as when it runs alone, the packed eval loss equal to the unpacked one (and to
// transformers' batch loss) within 1e-5, the packed gradients equal to the examples' own gradients weighted by their
// targets, gradient checkpointing bit for bit; Llama (chat-tiny), Mistral's sliding window and GPT-2, CPU and OpenCL.
import Foundation
import LoRATestSupport
import SwiftLoRA
import Testing

/// Every example of the chat-tiny fixture (chats both ways, text, prompt/completion): 16 examples of 10 to 96 tokens.
func allChatTinyExamples() throws -> (ids: [[Int]], labels: [[Int]]) {
    let e = try ExpectedData.load()
    let all = e.chat_generation + e.chat_incremental + e.text + e.prompt_completion
    return (all.map(\.input_ids), all.map(\.labels))
}

@Suite("Packing")
struct PackingTests {
    @Test("first-fit decreasing: longest first into the first window with room; first labels -100; positions restart")
    func firstFitDecreasing() throws {
        let examples = [[1, 1, 1, 1, 1], [2, 2, 2], [3, 3, 3, 3], [4, 4], [5, 5, 5, 5, 5, 5]]
        let labels = examples.map { $0.map { $0 * 10 } }
        let windows = try Packing.pack(examples, labels: labels, length: 8)
        #expect(windows.map(\.lengths) == [[6, 2], [5, 3], [4]])
        #expect(windows[0].tokens == [5, 5, 5, 5, 5, 5, 4, 4])
        #expect(windows[0].labels == [-100, 50, 50, 50, 50, 50, -100, 40])
        #expect(windows[0].positions == [0, 1, 2, 3, 4, 5, 0, 1])
        #expect(windows[2].labels == [-100, 30, 30, 30])
        #expect(throws: TrainingError.self) { try Packing.pack([[1, 2, 3]], labels: [[1, 2, 3]], length: 2) }
        #expect(throws: TrainingError.self) { try Packing.pack([[1, 2]], labels: [[1]], length: 4) }
    }

    @Test("a packed batch pads rows to the longest, the padding a segment of its own; segments give starts and positions")
    func packedBatch() throws {
        let windows = try Packing.pack([[1, 2, 3], [4, 5], [6, 7, 8, 9]], labels: [[1, 2, 3], [4, 5], [6, 7, 8, 9]], length: 5)
        #expect(windows.map(\.lengths) == [[4], [3, 2]])
        let batch = LabeledBatch.packed(windows, padID: 0)
        #expect(batch.tokens == [[6, 7, 8, 9, 0], [1, 2, 3, 4, 5]])
        #expect(batch.labels == [[-100, 7, 8, 9, -100], [-100, 2, 3, -100, 5]])
        #expect(batch.segments == PackedSegments([[4, 1], [3, 2]]) && batch.realTokens == 9)
        let segments = batch.segments!
        #expect(segments.positions == [0, 1, 2, 3, 0, 0, 1, 2, 0, 1])
        #expect(segments.starts == [0, 0, 0, 0, 4, 0, 0, 0, 3, 3])
        #expect(segments.endsExample == [false, false, false, true, false, false, false, true, false, false])
        #expect(throws: LoRAError.self) { try PackedSegments([[4, 2]]).check(batch: 1, length: 5, model: "test") }
        #expect(throws: LoRAError.self) { try PackedSegments([[5], [5]]).check(batch: 1, length: 5, model: "test") }
    }

    @Test("packed training data: every epoch's windows hold every example once; batches carry segments")
    func trainingData() throws {
        let (ids, labels) = try allChatTinyExamples()
        var data = try TrainingData(packing: ids, labels: labels, length: 128, batch: 2, seed: 3, padID: 4)
        #expect(data.windows.count < ids.count && data.segments!.joined().count == ids.count)
        #expect(data.windows.allSatisfy { $0.count <= 128 })
        #expect(data.fingerprint.contains("packing 16 examples"))
        var tokens = 0
        for _ in 0..<data.batchesPerEpoch {
            let batch = data.nextBatch()
            #expect(batch.segments?.lengths.count == batch.tokens.count)
            tokens += batch.realTokens
        }
        #expect(data.epoch == 1 && tokens == ids.joined().count)
        let unpacked = try TrainingData(examples: ids, labels: labels, batch: 2, seed: 3, padID: 4)
        #expect(unpacked.fingerprint != data.fingerprint && unpacked.packedLength == nil)
    }
}

@Suite("Packed rows in the models")
struct PackedModelTests {
    func evalLosses(_ backend: any Backend) throws {
        let model = try LlamaModel(folder: chatTiny, backend: backend)
        let (ids, labels) = try allChatTinyExamples()
        for length in [96, 128, 256] {
            let unpacked = try model.meanLoss(ids, labels: labels, batch: 3, padID: 4)
            let packed = try model.meanLoss(ids, labels: labels, batch: 3, padID: 4, packing: length)
            #expect(packed.predictions == unpacked.predictions)
            #expect(abs(packed.loss - unpacked.loss) <= 1e-5, "seq \(length): packed \(packed.loss) vs unpacked \(unpacked.loss)")
        }
        // transformers' token-weighted batch loss over the generation-template chats, packed.
        let e = try ExpectedData.load()
        let packed = try model.meanLoss(e.chat_generation.map(\.input_ids), labels: e.chat_generation.map(\.labels), batch: 8,
                                        padID: 4, packing: 160)
        #expect(abs(packed.loss - e.chat_generation_batch_loss) <= 1e-5, "\(packed.loss) vs \(e.chat_generation_batch_loss)")
    }

    @Test("packed eval loss equals unpacked within 1e-5 on the chat fixture, and transformers' batch loss, on the CPU")
    func evalCPU() throws { try evalLosses(CPUBackend.shared) }

    @Test("OpenCL packed eval loss equals unpacked within 1e-5 on the chat fixture, and transformers' batch loss",
          .enabled(if: TestDevices.runOpenCL, "\(TestDevices.skipReason)"))
    func evalOpenCL() throws { try evalLosses(try TestDevices.openCL.get()) }

    /// Llama (chat-tiny, grouped-query), Mistral (a sliding window of 4) and GPT-2 (position embeddings) on `backend`:
    /// logits of packed rows against each example alone.
    func logits(_ backend: any Backend) throws {
        let (ids, _) = try allChatTinyExamples()
        #expect(try packedLogitsMismatch(LlamaModel(folder: chatTiny, backend: backend), examples: ids, length: 200) == nil)
        let short = (0..<9).map { n in (0..<(3 + 5 * n % 13)).map { ($0 * 37 + n * 11) % 390 } }
        #expect(try packedLogitsMismatch(LlamaModel(folder: fixtureRoot + "/mistral-tiny", backend: backend), examples: short, length: 40) == nil)
        #expect(try packedLogitsMismatch(GPT2Model(folder: fixtureRoot + "/gpt2-tiny", backend: backend), examples: short, length: 32) == nil)
    }

    @Test("packed rows' logits equal each example's alone (Llama, Mistral's window, GPT-2) on the CPU")
    func logitsCPU() throws { try logits(CPUBackend.shared) }

    @Test("OpenCL packed rows' logits equal each example's alone (Llama, Mistral's window, GPT-2)",
          .enabled(if: TestDevices.runOpenCL, "\(TestDevices.skipReason)"))
    func logitsOpenCL() throws { try logits(try TestDevices.openCL.get()) }

    /// Full fine-tuning (every weight, embeddings and GPT-2's position table included) and LoRA on every linear with a
    /// nonzero B: packed gradients against the weighted sum of the examples' own.
    func gradients(_ backend: any Backend) throws {
        let (ids, labels) = try allChatTinyExamples()
        let llama = try LlamaModel(folder: chatTiny, backend: backend)
        try llama.enableFullTraining()
        let picked = [0, 2, 5, 10, 11, 13, 14]  // chats, text and prompt/completion examples
        #expect(try packedGradientMismatches(llama, examples: picked.map { ids[$0] }, labels: picked.map { labels[$0] }, length: 128).isEmpty)
        let gpt2 = try GPT2Model(folder: fixtureRoot + "/gpt2-tiny", backend: backend)
        try gpt2.enableFullTraining()
        let short = (0..<6).map { n in (0..<(4 + 3 * n)).map { ($0 * 37 + n * 11) % 390 } }
        #expect(try packedGradientMismatches(gpt2, examples: short, labels: short, length: 32).isEmpty)
        let lora = try LlamaModel(folder: chatTiny, backend: backend)
        try lora.applyLoRA(LoRAConfig(rank: 2, alpha: 4, targets: .allLinear), seed: 1)
        for (_, layer) in lora.loraLayers { try backend.fill(layer.loraB, with: 0.05) }
        #expect(try packedGradientMismatches(lora, examples: picked.map { ids[$0] }, labels: picked.map { labels[$0] }, length: 128).isEmpty)
    }

    @Test("packed gradients equal the examples' own, weighted by their targets (full fine-tuning, LoRA) on the CPU")
    func gradientsCPU() throws { try gradients(CPUBackend.shared) }

    @Test("OpenCL packed gradients equal the examples' own, weighted by their targets (full fine-tuning, LoRA)",
          .enabled(if: TestDevices.runOpenCL, "\(TestDevices.skipReason)"))
    func gradientsOpenCL() throws { try gradients(try TestDevices.openCL.get()) }

    @Test("gradient checkpointing recomputes packed blocks with their segments: the same gradients bit for bit")
    func checkpointing() throws {
        let (ids, labels) = try allChatTinyExamples()
        let short = (0..<6).map { n in (0..<(4 + 3 * n)).map { ($0 * 37 + n * 11) % 390 } }
        let cases: [(make: () throws -> any LanguageModel, ids: [[Int]], labels: [[Int]], length: Int)] = [
            ({ try LlamaModel(folder: chatTiny, backend: CPUBackend.shared) }, ids, labels, 128),
            ({ try GPT2Model(folder: fixtureRoot + "/gpt2-tiny", backend: CPUBackend.shared) }, short, short, 32),
        ]
        for (index, c) in cases.enumerated() {
            let batch = LabeledBatch.packed(try Packing.pack(c.ids, labels: c.labels, length: c.length), padID: 0)
            for full in [false, true] {
                var results: [[[UInt32]]] = []
                for checkpointing in [false, true] {
                    let model = try c.make()
                    if full { try model.enableFullTraining() } else {
                        try model.applyLoRA(LoRAConfig(rank: 2, alpha: 4, targets: .allLinear, dropout: 0.2), seed: 1)
                        model.training = true  // dropout masks must replay in the recomputation
                        for (_, layer) in model.loraLayers { try model.backend.fill(layer.loraB, with: 0.05) }
                    }
                    model.gradientCheckpointing = checkpointing
                    let g = try trainableGradients(of: model) {
                        _ = try model.loss(batch.tokens, labels: batch.labels, segments: batch.segments, gradients: true)
                    }
                    results.append(g.map { $0.map(\.bitPattern) })
                }
                #expect(results[0] == results[1], "case \(index), full \(full)")
            }
        }
    }

    @Test("training on packed data runs, and its eval (packed like the data) equals the unpacked eval")
    func trainer() throws {
        let (ids, labels) = try allChatTinyExamples()
        let model = try LlamaModel(folder: chatTiny, backend: CPUBackend.shared)
        try model.applyLoRA(LoRAConfig(rank: 2, alpha: 4, targets: model.defaultLoRATargets), seed: 1)
        var options = TrainingOptions(steps: 3)
        options.learningRate = 1e-2
        let data = try TrainingData(packing: ids, labels: labels, length: 128, batch: 2, seed: 3, padID: 4)
        let trainer = try Trainer(model: model, data: data, evalData: ids, evalLabels: labels, options: options)
        for _ in 0..<3 { #expect(try trainer.trainStep().loss.isFinite) }
        let packedEval = try trainer.evaluate()!
        let unpackedEval = try model.meanLoss(ids, labels: labels, batch: 2, padID: 4).loss
        #expect(abs(Double(packedEval) - unpackedEval) <= 1e-5)
    }
}
