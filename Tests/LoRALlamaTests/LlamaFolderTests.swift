// Hostile and broken Llama-family folders: each gives a clear error naming the file and the field or tensor, never a
// crash; the registry picks the family from config.json's model_type and refuses unknown ones by name.
import Foundation
import LoRATestSupport
import SwiftLoRA
import Testing

@Suite("Llama-family model folders")
struct LlamaFolderTests {
    /// A scratch copy of fixture `name` that a test may break.
    func copy(_ name: String) throws -> String {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("lora-folder-\(UUID().uuidString)").path
        try FileManager.default.copyItem(atPath: fixtureRoot + "/" + name, toPath: folder)
        return folder
    }

    /// The error loading `folder` through the registry gives, as text.
    func loadError(_ folder: String) -> String? {
        do { _ = try ModelRegistry.standard.load(folder: folder, backend: CPUBackend.shared) } catch { return "\(error)" }
        return nil
    }

    func editConfig(_ folder: String, _ edit: (inout [String: JSONValue]) -> Void) throws {
        let path = folder + "/config.json"
        var object = try #require(try JSONValue.parse(Data(contentsOf: URL(fileURLWithPath: path))).objectValue)
        edit(&object)
        try Data(JSONValue.object(object).serialized().utf8).write(to: URL(fileURLWithPath: path))
    }

    @Test("the registry loads every family by model_type and refuses an unknown one by name")
    func registry() throws {
        for name in LlamaFixture.names {
            let model = try ModelRegistry.standard.load(folder: fixtureRoot + "/" + name, backend: CPUBackend.shared)
            #expect(model is LlamaModel)
        }
        #expect(try ModelRegistry.standard.load(folder: fixtureRoot + "/gpt2-tiny", backend: CPUBackend.shared) is GPT2Model)
        let folder = try copy("llama-tiny")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try editConfig(folder) { $0["model_type"] = .string("falcon") }
        let error = try #require(loadError(folder))
        #expect(error.contains("config.json") && error.contains("falcon") && error.contains("llama"), "\(error)")
    }

    @Test("an unsupported rope type or activation is refused naming the field")
    func refusedConfig() throws {
        let folder = try copy("llama-tiny")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try editConfig(folder) { $0["rope_parameters"] = .object(["rope_type": .string("dynamic"), "rope_theta": .number(10000), "factor": .number(2)]) }
        let rope = try #require(loadError(folder))
        #expect(rope.contains("config.json") && rope.contains("dynamic"), "\(rope)")
        try editConfig(folder) { $0["rope_parameters"] = .object(["rope_type": .string("default"), "rope_theta": .number(10000)]); $0["hidden_act"] = .string("gelu") }
        let act = try #require(loadError(folder))
        #expect(act.contains("hidden_act"), "\(act)")
    }

    @Test("a tensor whose shape disagrees with config.json is refused naming both")
    func wrongShape() throws {
        let folder = try copy("llama-tiny")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try editConfig(folder) { $0["intermediate_size"] = .integer(96) }
        let error = try #require(loadError(folder))
        #expect(error.contains("model.safetensors") && error.contains("mlp") && error.contains("config.json"), "\(error)")
    }

    @Test("a missing tensor, an unknown tensor and an integer weight are each refused by name")
    func tensors() throws {
        let folder = try copy("llama-tiny")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = folder + "/model.safetensors"
        let original = try SafeTensorsFile(path: path)
        func rewrite(dropping dropped: String?, adding extra: SafeTensorsWriter.Item?) throws {
            var items: [SafeTensorsWriter.Item] = try original.names.filter { $0 != dropped }.map {
                .float32($0, shape: try original.entry($0).shape, values: try original.floats($0))
            }
            if let extra { items.append(extra) }
            try SafeTensorsWriter.write(items, to: path + ".new")
            try? FileManager.default.removeItem(atPath: path)
            try FileManager.default.moveItem(atPath: path + ".new", toPath: path)
        }
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        try rewrite(dropping: "model.layers.1.self_attn.k_proj.weight", adding: nil)
        let missing = try #require(loadError(folder))
        #expect(missing.contains("missing") && missing.contains("model.layers.1.self_attn.k_proj.weight"), "\(missing)")
        try data.write(to: URL(fileURLWithPath: path))
        try rewrite(dropping: nil, adding: .float32("model.layers.0.self_attn.rotary_emb.extra", shape: [2], values: [1, 2]))
        let unknown = try #require(loadError(folder))
        #expect(unknown.contains("model.layers.0.self_attn.rotary_emb.extra"), "\(unknown)")
        try data.write(to: URL(fileURLWithPath: path))
        try rewrite(dropping: "model.norm.weight", adding: .int64("model.norm.weight", shape: [32], values: Array(0..<32)))
        let integer = try #require(loadError(folder))
        #expect(integer.contains("model.norm.weight") && integer.contains("I64"), "\(integer)")
    }

    @Test("sharded folders: a missing shard and an index naming a tensor no shard holds are refused by name")
    func shards() throws {
        let folder = try copy("llama-tiny-bf16")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let indexPath = folder + "/model.safetensors.index.json"
        let index = try Data(contentsOf: URL(fileURLWithPath: indexPath))
        var object = try #require(try JSONValue.parse(index).objectValue)
        var map = try #require(object["weight_map"]?.objectValue)
        map["model.layers.9.mlp.up_proj.weight"] = .string("model-00001-of-00003.safetensors")
        object["weight_map"] = .object(map)
        try Data(JSONValue.object(object).serialized().utf8).write(to: URL(fileURLWithPath: indexPath))
        let phantom = try #require(loadError(folder))
        #expect(phantom.contains("model.layers.9.mlp.up_proj.weight"), "\(phantom)")
        try index.write(to: URL(fileURLWithPath: indexPath))
        try FileManager.default.removeItem(atPath: folder + "/model-00002-of-00003.safetensors")
        let shard = try #require(loadError(folder))
        #expect(shard.contains("model-00002-of-00003.safetensors"), "\(shard)")
    }

    @Test("bf16 weights stay bf16 on the device (half the bytes); a load converts to the dtype asked for", arguments: TestDevices.names)
    func dtypes(device: String) throws {
        let backend = try testBackend(device)
        let f32 = try LlamaModel(folder: fixtureRoot + "/llama-tiny", backend: backend)
        let bf16 = try LlamaModel(folder: fixtureRoot + "/llama-tiny-bf16", backend: backend)
        let norms = bf16.baseParameterCount - bf16.linearModules.reduce(0) { $0 + $1.inFeatures * $1.outFeatures } - 2 * 400 * 32
        #expect(bf16.weightBytes == f32.weightBytes / 2 + 2 * norms)  // norm weights stay float32
        let tokens = try LlamaFixture("llama-tiny").tokens
        // llama-tiny-bf16 is llama-tiny rounded to bf16 (as torch rounds), so converting at load gives its bits.
        let converted = try LlamaModel(folder: fixtureRoot + "/llama-tiny", backend: backend, options: ModelLoadOptions(dtype: .bfloat16))
        #expect(converted.weightBytes == bf16.weightBytes)
        for (ours, theirs) in zip(converted.linearModules, bf16.linearModules) {
            let (a, b) = (ours.dense!.weight, theirs.dense!.weight)
            let (bytesA, bytesB) = (try backend.downloadBytes(a), try backend.downloadBytes(b))
            #expect(a.dtype == .bfloat16 && bytesA == bytesB, "\(ours.name)")
        }
        let widened = try LlamaModel(folder: fixtureRoot + "/llama-tiny-bf16", backend: backend, options: ModelLoadOptions(dtype: .float32))
        #expect(widened.weightBytes == f32.weightBytes)
        #expect(logitMismatch(try widened.forward(tokens).toArray(), try bf16.forward(tokens).toArray()) == nil)
        #expect(throws: LoRAConfigError.self) { try bf16.enableFullTraining() }
    }
}
