// Many adapters in one batch, on Llama-family models and GPT-2, every device: each sequence of a batch with its own
// adapter (or none) gives, row for row, the logits of that sequence run alone with only its adapter loaded the usual
// way (a LoRALinear per module via PEFTAdapter.load), with and without the KV cache. Adapters: the fixture's PEFT
// adapter, and two written here (other ranks, alphas, rsLoRA and target sets, random B) through saveAdapter.
// Also: unloading frees a slot, plain forwards ignore the banks, and bad requests get their errors.
// (GPT-2 lives here too: one suite for the feature, over every family.)
import Foundation
import LoRATestSupport
import SwiftLoRA
import Testing

/// A fixture model with three adapters in a temporary folder: the fixture's own, and two made here.
struct MultiAdapterFixture {
    let name: String
    let folder: String
    /// Adapter folders, in the order they are loaded (slots 0, 1, 2).
    let adapters: [(name: String, folder: String)]

    static let names = ["llama-tiny", "qwen2-tiny", "gpt2-tiny"]
    static var cases: [(String, String)] { names.flatMap { name in TestDevices.names.map { (name, $0) } } }

    init(_ name: String) throws {
        self.name = name
        folder = fixtureRoot + "/" + name
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("lora-multi-\(UUID().uuidString)").path
        let isGPT2 = name.hasPrefix("gpt2")
        let second = LoRAConfig(rank: 3, alpha: 5, targets: .names(isGPT2 ? ["mlp.c_fc", "attn.c_attn"] : ["v_proj", "gate_proj", "down_proj"]),
                                useRSLoRA: true)
        let third = LoRAConfig(rank: 6, alpha: 12, targets: .allLinear)
        adapters = [("fixture", folder + "/adapter"), ("second", directory + "/second"), ("third", directory + "/third")]
        try Self.write(second, base: folder, seed: 21, to: adapters[1].folder)
        try Self.write(third, base: folder, seed: 42, to: adapters[2].folder)
    }

    /// A PEFT folder of `config` on the model in `base`, with random A (PEFT's init) and random B (not zero, so it counts).
    static func write(_ config: LoRAConfig, base: String, seed: UInt64, to folder: String) throws {
        let backend = CPUBackend.shared
        let model = try ModelRegistry.standard.load(folder: base, backend: backend)
        try model.applyLoRA(config, seed: seed)
        for (i, (_, layer)) in model.loraLayers.enumerated() {
            let values = randomValues(layer.loraB.count, seed: seed &+ UInt64(i)).map { $0 * 0.5 }
            try backend.copy(backend.upload(values, shape: layer.loraB.shape), to: layer.loraB)
        }
        try model.saveAdapter(folder: folder)
    }

    func model(_ device: String) throws -> any LanguageModel {
        try ModelRegistry.standard.load(folder: folder, backend: testBackend(device))
    }

    /// The model with every adapter loaded by slot.
    func served(_ device: String) throws -> any LanguageModel {
        let model = try model(device)
        for (index, adapter) in adapters.enumerated() {
            #expect(try model.loadAdapter(name: adapter.name, folder: adapter.folder) == index)
        }
        return model
    }

    /// The model with only adapter `slot` loaded the usual way (-1: none).
    func alone(_ device: String, slot: Int) throws -> any LanguageModel {
        let model = try model(device)
        if slot >= 0 { try model.loadAdapter(folder: adapters[slot].folder) }
        return model
    }

    /// `count` sequences of `length` random ids.
    func tokens(_ model: any LanguageModel, count: Int, length: Int, seed: UInt64) -> [[Int]] {
        var generator = SeededGenerator(seed: seed)
        return (0..<count).map { _ in (0..<length).map { _ in Int(generator.next() % UInt64(model.vocabularySize)) } }
    }
}

@Suite("Many adapters in one batch")
struct MultiAdapterModelTests {
    /// Which slot each sequence uses: every adapter, the base, and one adapter twice.
    let assignment = [0, -1, 1, 2, 0]

    @Test("each sequence with its own adapter equals that sequence alone with only its adapter", arguments: MultiAdapterFixture.cases)
    func batchEqualsAlone(name: String, device: String) throws {
        let fixture = try MultiAdapterFixture(name)
        let served = try fixture.served(device)
        #expect(served.adapterNames == ["fixture", "second", "third"])
        // 9 tokens a sequence: on OpenCL, segments this long take the per-segment GEMMs (the cached test's decode
        // steps take the per-row kernels).
        let (t, v) = (9, served.vocabularySize)
        let tokens = fixture.tokens(served, count: assignment.count, length: t, seed: 3)
        let batched = try served.forward(tokens, cache: nil, adapters: assignment).toArray()
        var alone: [Int: any LanguageModel] = [:]
        for (b, slot) in assignment.enumerated() {
            let model = try alone[slot] ?? fixture.alone(device, slot: slot)
            alone[slot] = model
            let expected = try model.forward([tokens[b]]).toArray()
            #expect(logitMismatch(Array(batched[b * t * v..<(b + 1) * t * v]), expected) == nil, "sequence \(b), slot \(slot)")
        }
        // Every adapter moves the logits well past the tolerance, so the comparisons above could fail.
        let base = try alone[-1]!.forward(tokens).toArray()
        for (b, slot) in assignment.enumerated() where slot >= 0 {
            let rows = b * t * v..<(b + 1) * t * v
            #expect(firstMismatch(Array(batched[rows]), Array(base[rows]), atol: 1e-3, rtol: 0) != nil, "sequence \(b), slot \(slot)")
        }
        // A forward without adapter rows ignores the banks: the base model, bit for bit.
        #expect(try served.forward(tokens).toArray() == base)
    }

    @Test("with the KV cache: prefill and decode steps equal each sequence alone with its own cache",
          arguments: MultiAdapterFixture.cases)
    func cachedSteps(name: String, device: String) throws {
        let fixture = try MultiAdapterFixture(name)
        let served = try fixture.served(device)
        let (prefill, steps, v) = (5, 3, served.vocabularySize)
        let tokens = fixture.tokens(served, count: assignment.count, length: prefill + steps, seed: 4)
        let chunks = [0..<prefill] + (prefill..<prefill + steps).map { $0..<$0 + 1 }
        let cache = try KVCache(model: served, batch: assignment.count, capacity: prefill + steps)
        let batched = try chunks.map { chunk in
            try served.forward(tokens.map { Array($0[chunk]) }, cache: cache, adapters: assignment).toArray()
        }
        var models: [Int: any LanguageModel] = [:]
        for (b, slot) in assignment.enumerated() {
            let model = try models[slot] ?? fixture.alone(device, slot: slot)
            models[slot] = model
            let own = try KVCache(model: model, batch: 1, capacity: prefill + steps)
            for (step, chunk) in chunks.enumerated() {
                let expected = try model.forward([Array(tokens[b][chunk])], cache: own).toArray()
                let rows = chunk.count * v
                #expect(logitMismatch(Array(batched[step][b * rows..<(b + 1) * rows]), expected) == nil,
                        "sequence \(b), slot \(slot), step \(step)")
            }
        }
    }

    @Test("unloading frees the slot for the next adapter; an unloaded slot is refused; the last unload drops the banks",
          arguments: TestDevices.names)
    func unloadAndReuse(device: String) throws {
        let fixture = try MultiAdapterFixture("llama-tiny")
        let served = try fixture.served(device)
        let tokens = fixture.tokens(served, count: 3, length: 4, seed: 5)
        let before = try served.forward(tokens, cache: nil, adapters: [1, 2, 0]).toArray()
        try served.unloadAdapter(name: "second")
        #expect(served.adapterNames == ["fixture", "third"])
        #expect(throws: AdapterSlotError.unknownSlot(1, loaded: ["fixture", "third"])) {
            try served.forward(tokens, cache: nil, adapters: [1, 2, 0])
        }
        #expect(try served.loadAdapter(name: "again", folder: fixture.adapters[1].folder) == 1)
        #expect(served.adapterNames == ["fixture", "again", "third"])
        #expect(logitMismatch(try served.forward(tokens, cache: nil, adapters: [1, 2, 0]).toArray(), before) == nil)
        for name in served.adapterNames { try served.unloadAdapter(name: name) }
        #expect(served.adapterNames.isEmpty && served.linearModules.allSatisfy { $0.adapters == nil })
        // With every bank gone, the usual single adapter may go on again.
        try served.loadAdapter(folder: fixture.adapters[0].folder)
    }

    @Test("bad requests: a name twice, too many adapters, shapes that do not fit, targets that match nothing, mixing with a trainable adapter, backward through the banks")
    func errors() throws {
        let fixture = try MultiAdapterFixture("llama-tiny")
        let model = try fixture.model("cpu")
        model.maxAdapters = 2
        try model.loadAdapter(name: "a", folder: fixture.adapters[0].folder)
        #expect(throws: AdapterSlotError.duplicateName("a", slot: 0)) { try model.loadAdapter(name: "a", folder: fixture.adapters[1].folder) }
        try model.loadAdapter(name: "b", folder: fixture.adapters[1].folder)
        #expect(throws: AdapterSlotError.tooManyAdapters(limit: 2, loaded: ["a", "b"])) {
            try model.loadAdapter(name: "c", folder: fixture.adapters[2].folder)
        }
        #expect(throws: AdapterSlotError.unknownName("c", loaded: ["a", "b"])) { try model.unloadAdapter(name: "c") }
        try model.unloadAdapter(name: "b")

        // An adapter for GPT-2 targets nothing a Llama model has.
        #expect(throws: LoRAConfigError.self) { try model.loadAdapter(name: "gpt2", folder: fixtureRoot + "/gpt2-tiny/adapter") }
        // An adapter of a wider model: the error names the key, the module and both shapes.
        let wrong = FileManager.default.temporaryDirectory.appendingPathComponent("lora-wrong-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: wrong, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: fixture.adapters[0].folder + "/adapter_config.json", toPath: wrong + "/adapter_config.json")
        let file = try SafeTensorsFile(path: fixture.adapters[0].folder + "/adapter_model.safetensors")
        let key = "base_model.model.model.layers.1.self_attn.k_proj.lora_A.weight"
        let items = try file.entries.keys.sorted().map { name -> SafeTensorsWriter.Item in
            let shape = try file.entry(name).shape
            guard name == key else { return .float32(name, shape: shape, values: try file.floats(name)) }
            return .float32(name, shape: [shape[0], shape[1] + 1], values: [Float](repeating: 0, count: shape[0] * (shape[1] + 1)))
        }
        try SafeTensorsWriter.write(items, to: wrong + "/adapter_model.safetensors")
        do {
            try model.loadAdapter(name: "wrong", folder: wrong)
            Issue.record("an adapter of the wrong shape loaded")
        } catch let error as FormatError {
            let message = "\(error)"
            #expect(message.contains("model.layers.1.self_attn.k_proj") && message.contains("[4, 33]") && message.contains("[4, 32]"), "\(message)")
        }
        #expect(model.adapterNames == ["a"])

        // Banks and a trainable adapter do not mix, either way round.
        #expect(throws: LoRAConfigError.self) { try model.loadAdapter(folder: fixture.adapters[1].folder) }
        let trained = try fixture.model("cpu")
        try trained.loadAdapter(folder: fixture.adapters[1].folder)
        #expect(throws: AdapterSlotError.self) { try trained.loadAdapter(name: "x", folder: fixture.adapters[0].folder) }

        // Banks serve inference: backward through them is refused.
        let tokens = fixture.tokens(model, count: 2, length: 4, seed: 6)
        _ = try model.forward(tokens, cache: nil, adapters: [0, 0])
        let dlogits = try model.backend.zeros([8, model.vocabularySize])
        #expect(throws: LoRAError.self) { try model.backward(dlogits: dlogits) }
        #expect(throws: LoRAError.self) { try model.forward(tokens, cache: nil, adapters: [0, -2]) }
        #expect(throws: AdapterSlotError.self) { try model.forward(tokens, cache: nil, adapters: [0]) }
    }
}
