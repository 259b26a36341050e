// GPT-2 + LoRA against the PyTorch + PEFT fixture (Tests/Fixtures/gpt2-tiny, written by make_fixtures.py), on
// every device: base, LoRA and merged logits, the loss, every LoRA gradient; B = 0 reproduces the base; merge
// then unmerge restores it; adapters round-trip through our writer; training steps, full fine-tuning gradients
// and KV-cache generation. Each runs once per device (`devices`: OpenCL wherever CI requires it), so these
// names do not start with "OpenCL" and CI's count of OpenCL tests leaves them out.
import Foundation
import LoRATestSupport
import SwiftLoRA
import Testing

let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures/gpt2-tiny").path

/// What PyTorch + PEFT computed (expected.safetensors).
struct Expected {
    let file: SafeTensorsFile
    let tokens: [[Int]]
    init() throws {
        file = try SafeTensorsFile(path: fixtures + "/expected.safetensors")
        let flat = try file.integers("tokens"), shape = try file.entry("tokens").shape
        tokens = (0..<shape[0]).map { Array(flat[$0 * shape[1]..<($0 + 1) * shape[1]]) }
    }
    func values(_ name: String) throws -> [Float] { try file.floats(name) }
}

@Suite("GPT-2 against PyTorch + PEFT")
struct GPT2FixtureTests {
    static var devices: [String] { TestDevices.names }


    @Test("base logits match transformers", arguments: devices)
    func baseLogits(device: String) throws {
        let expected = try Expected()
        let model = try GPT2Model(folder: fixtures, backend: testBackend(device))
        #expect(logitMismatch(try model.forward(expected.tokens).toArray(), try expected.values("base_logits")) == nil)
    }

    @Test("a PEFT adapter: logits, loss and every LoRA gradient match PEFT", arguments: devices)
    func loraForwardBackward(device: String) throws {
        let expected = try Expected()
        let model = try GPT2Model(folder: fixtures, backend: testBackend(device))
        try model.loadAdapter(folder: fixtures + "/adapter")
        #expect(model.loraLayers.count == 6)  // "c_proj" also selects mlp.c_proj, as in PEFT
        #expect(logitMismatch(try model.forward(expected.tokens).toArray(), try expected.values("lora_logits")) == nil)
        let loss = try model.loss(expected.tokens, gradients: true).loss
        let expectedLoss = try expected.values("loss")[0]
        #expect(abs(loss - expectedLoss) <= 1e-5 * abs(expectedLoss), "loss \(loss) vs \(expectedLoss)")
        for (name, layer) in model.loraLayers {
            for (part, gradient) in [("lora_A", layer.gradA), ("lora_B", layer.gradB)] {
                let key = "base_model.model.\(name).\(part).weight.grad"
                #expect(firstMismatch(try gradient.toArray(), try expected.values(key), atol: 1e-7, rtol: 1e-4) == nil, "\(key)")
            }
        }
    }

    @Test("merged equals unmerged and matches PEFT's merge_and_unload; unmerge restores the base", arguments: devices)
    func merge(device: String) throws {
        let expected = try Expected()
        let model = try GPT2Model(folder: fixtures, backend: testBackend(device))
        try model.loadAdapter(folder: fixtures + "/adapter")
        try model.mergeAdapters()
        let merged = try model.forward(expected.tokens).toArray()
        #expect(logitMismatch(merged, try expected.values("merged_logits")) == nil)
        #expect(logitMismatch(merged, try expected.values("lora_logits")) == nil)
        try model.unmergeAdapters()
        for (_, layer) in model.loraLayers { try model.backend.fill(layer.loraB, with: 0) }
        #expect(logitMismatch(try model.forward(expected.tokens).toArray(), try expected.values("base_logits")) == nil)
        // PEFT's merged folder loads as a plain model with the same logits.
        let peftMerged = try GPT2Model(folder: fixtures + "/merged", backend: model.backend)
        #expect(logitMismatch(try peftMerged.forward(expected.tokens).toArray(), merged) == nil)
    }

    @Test("a fresh adapter (B = 0) reproduces the base logits", arguments: devices)
    func freshAdapter(device: String) throws {
        let expected = try Expected()
        let model = try GPT2Model(folder: fixtures, backend: testBackend(device))
        try model.applyLoRA(LoRAConfig(rank: 2, alpha: 4, targets: .pattern(#".*\.attn\.c_attn"#)))
        #expect(model.loraLayers.map(\.name) == ["transformer.h.0.attn.c_attn", "transformer.h.1.attn.c_attn"])
        #expect(logitMismatch(try model.forward(expected.tokens).toArray(), try expected.values("base_logits")) == nil)
    }

    @Test("an adapter written here reads back identically, and a merged folder written here loads")
    func writeAndReload() throws {
        let expected = try Expected()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("lora-gpt2-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let model = try GPT2Model(folder: fixtures, backend: CPUBackend.shared)
        try model.loadAdapter(folder: fixtures + "/adapter")
        try model.saveAdapter(folder: directory + "/adapter")
        let logits = try model.forward(expected.tokens).toArray()
        let reloaded = try GPT2Model(folder: fixtures, backend: CPUBackend.shared)
        try reloaded.loadAdapter(folder: directory + "/adapter")
        #expect(try reloaded.forward(expected.tokens).toArray() == logits)
        try model.mergeAdapters()
        try model.save(folder: directory + "/merged")
        let merged = try GPT2Model(folder: directory + "/merged", backend: CPUBackend.shared)
        #expect(logitMismatch(try merged.forward(expected.tokens).toArray(), try expected.values("merged_logits")) == nil)
    }

    /// An adapter made here (rsLoRA, a regex target, non-zero B), written with the logits it gives. With
    /// LORA_FIXTURE_EXPORT=DIR the folder is kept there for `make_fixtures.py --check DIR` (PEFT loads it and
    /// compares); the check's last result is recorded in Tests/Fixtures/README.md.
    @Test("an adapter made here is written with PEFT's names and config, and reads back with the same logits")
    func exportForPEFT() throws {
        let expected = try Expected()
        let keep = ProcessInfo.processInfo.environment["LORA_FIXTURE_EXPORT"]
        let folder = keep ?? FileManager.default.temporaryDirectory.appendingPathComponent("lora-export-\(UUID().uuidString)").path
        defer { if keep == nil { try? FileManager.default.removeItem(atPath: folder) } }
        let model = try GPT2Model(folder: fixtures, backend: CPUBackend.shared)
        try model.applyLoRA(LoRAConfig(rank: 3, alpha: 5, targets: .pattern(#"transformer\.h\.\d+\.(attn\.c_attn|mlp\.c_fc)"#),
                                       useRSLoRA: true), seed: 7)
        #expect(model.loraLayers.count == 4)
        for (index, (_, layer)) in model.loraLayers.enumerated() {
            try model.backend.copy(model.backend.upload(randomValues(layer.loraB.count, seed: 40 + UInt64(index)), shape: layer.loraB.shape),
                                   to: layer.loraB)
        }
        try model.saveAdapter(folder: folder)
        let logits = try model.forward(expected.tokens)
        try SafeTensorsWriter.write([.int64("tokens", shape: [expected.tokens.count, expected.tokens[0].count], values: Array(expected.tokens.joined())),
                                     .float32("logits", shape: logits.shape, values: try logits.toArray())],
                                    to: folder + "/expected_logits.safetensors")
        let config = try JSONValue.parse(Data(contentsOf: URL(fileURLWithPath: folder + "/adapter_config.json"))).objectValue ?? [:]
        #expect(config["peft_type"] == .string("LORA") && config["use_rslora"] == .bool(true) && config["r"] == .integer(3))
        let reloaded = try GPT2Model(folder: fixtures, backend: CPUBackend.shared)
        try reloaded.loadAdapter(folder: folder)
        #expect(try reloaded.forward(expected.tokens).toArray() == logits.toArray())
    }

    @Test("unsupported adapter settings are refused by field name", arguments: [
        ("use_dora", "true"), ("bias", "\"all\""), ("modules_to_save", "[\"lm_head\"]"), ("rank_pattern", "{\"c_attn\": 8}"),
        ("peft_type", "\"IA3\""), ("task_type", "\"SEQ_CLS\""), ("layers_to_transform", "[0]"), ("init_lora_weights", "\"pissa\""),
    ])
    func refusedAdapterFields(field: String, value: String) throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("lora-refuse-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        var text = try String(contentsOfFile: fixtures + "/adapter/adapter_config.json", encoding: .utf8)
        let line = try #require(text.split(separator: "\n").first { $0.contains("\"\(field)\":") })
        text = text.replacingOccurrences(of: String(line), with: "  \"\(field)\": \(value)" + (line.hasSuffix(",") ? "," : ""))
        try text.write(toFile: folder + "/adapter_config.json", atomically: true, encoding: .utf8)
        try FileManager.default.copyItem(atPath: fixtures + "/adapter/adapter_model.safetensors", toPath: folder + "/adapter_model.safetensors")
        let model = try GPT2Model(folder: fixtures, backend: CPUBackend.shared)
        let error = #expect(throws: FormatError.self) { try model.loadAdapter(folder: folder) }
        #expect(error?.description.contains(field) == true, "\(String(describing: error))")
    }
}

@Suite("Training against PyTorch + PEFT")
struct TrainingFixtureTests {
    @Test("10 AdamW steps from the PEFT adapter: every step's loss and the trained adapter match PEFT",
          arguments: GPT2FixtureTests.devices)
    func adamWSteps(device: String) throws {
        let expected = try Expected()
        let backend = try testBackend(device)
        let model = try GPT2Model(folder: fixtures, backend: backend)
        try model.loadAdapter(folder: fixtures + "/adapter")
        model.training = true
        let optimizer = try Optimizer(.adamw, parameters: model.trainableParameters)
        let reference = try expected.values("train_losses")
        for step in 0..<10 {
            try model.zeroGradients()
            let loss = try model.loss(expected.tokens, gradients: true).loss
            #expect(abs(loss - reference[step]) <= 1e-5 * abs(reference[step]), "step \(step + 1): \(loss) vs \(reference[step])")
            try optimizer.update(learningRate: 1e-3)
        }
        for p in model.trainableParameters {
            #expect(firstMismatch(try p.value.toArray(), try expected.values("trained." + p.name), atol: 1e-4, rtol: 0) == nil, "\(p.name)")
        }
    }
}

@Suite("Full fine-tuning against PyTorch")
struct FullTrainingFixtureTests {
    @Test("every weight's gradient matches PyTorch's (wte with the tied LM head)", arguments: GPT2FixtureTests.devices)
    func fullGradients(device: String) throws {
        let expected = try Expected()
        let backend = try testBackend(device)
        let model = try GPT2Model(folder: fixtures, backend: backend)
        try model.enableFullTraining()
        let loss = try model.loss(expected.tokens, gradients: true).loss
        #expect(loss.isFinite)
        let parameters = model.trainableParameters
        #expect(parameters.count == 28)
        for p in parameters {
            let reference = try expected.values("full." + p.name + ".grad")
            let scale = reference.map(abs).max() ?? 1
            #expect(firstMismatch(try p.gradient.toArray(), reference, atol: 1e-5 * scale, rtol: 1e-4) == nil, "\(p.name)")
        }
        #expect(throws: LoRAConfigError.self) { try model.applyLoRA(LoRAConfig()) }
    }
}

@Suite("Generation with a KV cache")
struct GenerationTests {
    @Test("cached steps give the full forward's logits, and generation equals greedy decoding without a cache",
          arguments: GPT2FixtureTests.devices)
    func cachedEqualsFull(device: String) throws {
        let expected = try Expected()
        let backend = try testBackend(device)
        let model = try GPT2Model(folder: fixtures, backend: backend)
        try model.loadAdapter(folder: fixtures + "/adapter")
        let tokens = expected.tokens
        let full = try model.forward(tokens).toArray()
        // The same batch fed to a cache in three pieces: 4, 1 and 4 positions.
        let cache = try KVCache(model: model, batch: tokens.count, capacity: 12)
        var pieces: [[Float]] = [[], []]
        for range in [0..<4, 4..<5, 5..<9] {
            let logits = try model.forward(tokens.map { Array($0[range]) }, appendingTo: cache).toArray()
            let width = model.config.vocabSize * range.count
            for b in 0..<tokens.count { pieces[b] += logits[b * width..<(b + 1) * width] }
        }
        #expect(logitMismatch(pieces[0] + pieces[1], full) == nil)
        #expect(cache.length == 9)
        #expect(throws: LoRAError.self) { try model.forward(tokens.map { Array($0[0..<4]) }, appendingTo: cache) }
        let prompt = Array(tokens[0].prefix(5))
        let generated = try model.generate(prompt: prompt, maxTokens: 8)
        #expect(generated == (try model.greedyContinuation([prompt], count: 8))[0])
        // Sampling is reproducible by seed and stays within the top k.
        let sampled = try model.generate(prompt: prompt, maxTokens: 8, sampling: Sampling(temperature: 1.5, topK: 3, seed: 11))
        #expect(sampled == (try model.generate(prompt: prompt, maxTokens: 8, sampling: Sampling(temperature: 1.5, topK: 3, seed: 11))))
    }
}
