// The Llama family against transformers + PEFT (Tests/Fixtures/<model>, written by make_llama_fixtures.py), on
// every device: Llama (GQA, llama3 RoPE, untied), Qwen2 (q/k/v bias, tied, rsLoRA), Qwen3 (q/k norm, head_dim ≠
// hidden/heads, YaRN, all-linear LoRA), Mistral (sliding window shorter than the batch, MQA, byte-fallback
// tokenizer) and a bf16 sharded Llama. Base, LoRA and merged logits, the loss, every LoRA gradient, 10 AdamW steps,
// KV-cache generation against transformers' greedy decoding. Each runs once per (model, device); the names do not
// start with "OpenCL", so CI's count of OpenCL tests leaves them out.
import Foundation
import LoRATestSupport
import SwiftLoRA
import Testing

let fixtureRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures").path

/// One fixture model folder and what transformers + PEFT computed for it (expected.safetensors).
struct LlamaFixture {
    let folder: String
    let file: SafeTensorsFile
    let tokens: [[Int]]

    init(_ name: String) throws {
        folder = fixtureRoot + "/" + name
        file = try SafeTensorsFile(path: folder + "/expected.safetensors")
        let flat = try file.integers("tokens"), shape = try file.entry("tokens").shape
        tokens = (0..<shape[0]).map { Array(flat[$0 * shape[1]..<($0 + 1) * shape[1]]) }
    }

    func values(_ name: String) throws -> [Float] { try file.floats(name) }
    func model(_ device: String) throws -> LlamaModel { try LlamaModel(folder: folder, backend: testBackend(device)) }

    static let names = ["llama-tiny", "qwen2-tiny", "qwen3-tiny", "mistral-tiny", "llama-tiny-bf16"]

    /// Whether the weights are bf16 (kept so on the device): a merge rounds W + s·B·A to bf16, as PEFT's merge
    /// into a bf16 weight does, so merged logits agree with the float32 merge only to bf16's precision.
    var isBFloat16: Bool { folder.hasSuffix("-bf16") }

    /// Logits after a merge: to 1e-5 relative, or for bf16 weights to bf16's rounding (2⁻⁸ of the weights).
    func mergedMismatch(_ got: [Float], _ expected: [Float]) -> String? {
        guard isBFloat16 else { return logitMismatch(got, expected) }
        let scale = expected.map(abs).max() ?? 1
        return firstMismatch(got, expected, atol: 2e-2 * scale, rtol: 0)
    }
    /// Every (model, device) pair.
    static var cases: [(String, String)] { names.flatMap { name in TestDevices.names.map { (name, $0) } } }
}

@Suite("Llama family against transformers + PEFT")
struct LlamaFixtureTests {
    @Test("base logits match transformers", arguments: LlamaFixture.cases)
    func baseLogits(name: String, device: String) throws {
        let fixture = try LlamaFixture(name)
        let model = try fixture.model(device)
        #expect(logitMismatch(try model.forward(fixture.tokens).toArray(), try fixture.values("base_logits")) == nil)
    }

    @Test("a PEFT adapter: logits, loss and every LoRA gradient match PEFT", arguments: LlamaFixture.cases)
    func loraForwardBackward(name: String, device: String) throws {
        let fixture = try LlamaFixture(name)
        let model = try fixture.model(device)
        try model.loadAdapter(folder: fixture.folder + "/adapter")
        #expect(!model.loraLayers.isEmpty)
        #expect(logitMismatch(try model.forward(fixture.tokens).toArray(), try fixture.values("lora_logits")) == nil)
        let loss = try model.loss(fixture.tokens, gradients: true).loss
        let expectedLoss = try fixture.values("loss")[0]
        #expect(abs(loss - expectedLoss) <= 1e-5 * abs(expectedLoss), "loss \(loss) vs \(expectedLoss)")
        for (module, layer) in model.loraLayers {
            for (part, gradient) in [("lora_A", layer.gradA), ("lora_B", layer.gradB)] {
                let key = "base_model.model.\(module).\(part).weight.grad"
                let reference = try fixture.values(key)
                let scale = reference.map(abs).max() ?? 1
                #expect(firstMismatch(try gradient.toArray(), reference, atol: 1e-5 * scale, rtol: 1e-4) == nil, "\(key)")
            }
        }
    }

    @Test("merged equals unmerged and PEFT's merge_and_unload; unmerge and B = 0 restore the base", arguments: LlamaFixture.cases)
    func merge(name: String, device: String) throws {
        let fixture = try LlamaFixture(name)
        let model = try fixture.model(device)
        try model.loadAdapter(folder: fixture.folder + "/adapter")
        try model.mergeAdapters()
        let merged = try model.forward(fixture.tokens).toArray()
        #expect(fixture.mergedMismatch(merged, try fixture.values("merged_logits")) == nil)
        #expect(model.linearModules.allSatisfy { $0.dense!.weight.dtype == (fixture.isBFloat16 ? .bfloat16 : .float32) })
        let peftMerged = try LlamaModel(folder: fixture.folder + "/merged", backend: model.backend)
        #expect(logitMismatch(try peftMerged.forward(fixture.tokens).toArray(), try fixture.values("merged_logits")) == nil)
        try model.unmergeAdapters()
        for (_, layer) in model.loraLayers { try model.backend.fill(layer.loraB, with: 0) }
        #expect(fixture.mergedMismatch(try model.forward(fixture.tokens).toArray(), try fixture.values("base_logits")) == nil)
    }

    @Test("10 AdamW steps from the PEFT adapter: every step's loss and the trained adapter match PEFT",
          arguments: LlamaFixture.cases)
    func adamWSteps(name: String, device: String) throws {
        let fixture = try LlamaFixture(name)
        let model = try fixture.model(device)
        try model.loadAdapter(folder: fixture.folder + "/adapter")
        model.training = true
        let optimizer = try Optimizer(.adamw, parameters: model.trainableParameters)
        let reference = try fixture.values("train_losses"), lr = try fixture.values("train_lr")[0]
        for step in 0..<reference.count {
            try model.zeroGradients()
            let loss = try model.loss(fixture.tokens, gradients: true).loss
            // The first loss is the forward alone. Later ones carry the updates: at lr 1e-2, AdamW's m/√v turns
            // float-summation-order differences in near-zero gradient elements into ±lr steps (rsLoRA's scale 4
            // on qwen2 amplifies them most), so they agree to ~2e-5, not 1e-5.
            let tolerance: Float = step == 0 ? 1e-5 : 1e-4
            #expect(abs(loss - reference[step]) <= tolerance * abs(reference[step]), "step \(step + 1): \(loss) vs \(reference[step])")
            try optimizer.update(learningRate: lr)
        }
        for p in model.trainableParameters {
            #expect(firstMismatch(try p.value.toArray(), try fixture.values("trained." + p.name), atol: 1e-4, rtol: 0) == nil, "\(p.name)")
        }
    }

    @Test("KV-cache steps give the full forward's logits; greedy generation equals transformers' generate",
          arguments: LlamaFixture.cases)
    func generation(name: String, device: String) throws {
        let fixture = try LlamaFixture(name)
        let model = try fixture.model(device)
        let tokens = fixture.tokens, length = tokens[0].count
        let full = try model.forward(tokens).toArray()
        let cache = try KVCache(model: model, batch: tokens.count, capacity: length + 2)
        var pieces: [[Float]] = Array(repeating: [], count: tokens.count)
        for range in [0..<4, 4..<5, 5..<length] {
            let logits = try model.forward(tokens.map { Array($0[range]) }, appendingTo: cache).toArray()
            let width = model.vocabularySize * range.count
            for b in tokens.indices { pieces[b] += logits[b * width..<(b + 1) * width] }
        }
        #expect(logitMismatch(pieces.flatMap { $0 }, full) == nil)
        let prompt = try fixture.file.integers("greedy_prompt")
        #expect(try model.generate(prompt: prompt, maxTokens: 8) == fixture.file.integers("greedy_base"))
        try model.loadAdapter(folder: fixture.folder + "/adapter")
        #expect(try model.generate(prompt: prompt, maxTokens: 8) == fixture.file.integers("greedy_lora"))
    }

    @Test("full fine-tuning: every weight's gradient matches PyTorch's", arguments: TestDevices.names)
    func fullGradients(device: String) throws {
        let fixture = try LlamaFixture("llama-tiny")
        let model = try fixture.model(device)
        try model.enableFullTraining()
        _ = try model.loss(fixture.tokens, gradients: true)
        let parameters = model.trainableParameters
        #expect(parameters.count == 2 + 2 * 9 + 1)
        for p in parameters {
            let reference = try fixture.values("full." + p.name + ".grad")
            let scale = reference.map(abs).max() ?? 1
            #expect(firstMismatch(try p.gradient.toArray(), reference, atol: 1e-5 * scale, rtol: 1e-4) == nil, "\(p.name)")
        }
    }

    @Test("an adapter written here reads back identically; a merged folder written here loads with the same logits",
          arguments: LlamaFixture.names)
    func writeAndReload(name: String) throws {
        let fixture = try LlamaFixture(name)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("lora-llama-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let model = try fixture.model("cpu")
        try model.loadAdapter(folder: fixture.folder + "/adapter")
        try model.saveAdapter(folder: directory + "/adapter")
        let logits = try model.forward(fixture.tokens).toArray()
        let reloaded = try fixture.model("cpu")
        try reloaded.loadAdapter(folder: directory + "/adapter")
        #expect(try reloaded.forward(fixture.tokens).toArray() == logits)
        try model.mergeAdapters()
        try model.save(folder: directory + "/merged", maxShardBytes: 20_000)
        let merged = try LlamaModel(folder: directory + "/merged", backend: CPUBackend.shared)
        #expect(try merged.forward(fixture.tokens).toArray() == model.forward(fixture.tokens).toArray())
        #expect(fixture.mergedMismatch(try merged.forward(fixture.tokens).toArray(), try fixture.values("merged_logits")) == nil)
        #expect(merged.weightBytes == model.weightBytes)
    }

    /// An adapter made here ("all-linear", rsLoRA on every other model, non-zero B) written with the logits it gives,
    /// and the fixture adapter merged and saved by us. With LORA_FIXTURE_EXPORT=DIR both are kept in DIR/<model>/
    /// for `make_llama_fixtures.py --check DIR/<model>/adapter --model <model>` (PEFT loads ours) and
    /// `--check-merged DIR/<model>/merged` (transformers loads ours); Tests/Fixtures/README.md records the result.
    @Test("an all-linear adapter made here is written with PEFT's names; a merged folder is written for transformers",
          arguments: LlamaFixture.names.filter { !$0.hasSuffix("-bf16") })
    func exportForPEFT(name: String) throws {
        let fixture = try LlamaFixture(name)
        let keep = ProcessInfo.processInfo.environment["LORA_FIXTURE_EXPORT"]
        let folder = (keep ?? FileManager.default.temporaryDirectory.appendingPathComponent("lora-export-\(UUID().uuidString)").path) + "/" + name
        defer { if keep == nil { try? FileManager.default.removeItem(atPath: folder) } }
        let model = try fixture.model("cpu")
        try model.applyLoRA(LoRAConfig(rank: 3, alpha: 5, targets: .allLinear, useRSLoRA: name.hasPrefix("qwen")), seed: 7)
        #expect(model.loraLayers.count == 7 * model.config.layers)  // every linear but the LM head
        for (index, (_, layer)) in model.loraLayers.enumerated() {
            try model.backend.copy(model.backend.upload(randomValues(layer.loraB.count, seed: 40 + UInt64(index)), shape: layer.loraB.shape),
                                   to: layer.loraB)
        }
        try model.saveAdapter(folder: folder + "/adapter")
        let logits = try model.forward(fixture.tokens)
        try SafeTensorsWriter.write([.int64("tokens", shape: [fixture.tokens.count, fixture.tokens[0].count], values: Array(fixture.tokens.joined())),
                                     .float32("logits", shape: logits.shape, values: try logits.toArray())],
                                    to: folder + "/adapter/expected_logits.safetensors")
        let reloaded = try fixture.model("cpu")
        try reloaded.loadAdapter(folder: folder + "/adapter")
        #expect(try reloaded.forward(fixture.tokens).toArray() == logits.toArray())
        let merged = try fixture.model("cpu")
        try merged.loadAdapter(folder: fixture.folder + "/adapter")
        try merged.mergeAdapters()
        try merged.save(folder: folder + "/merged")
    }
}
