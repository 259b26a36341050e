// Hostile model folders: mutated config.json files and checkpoints that do not fit their config give a clear
// error (naming the file and the field) or a correct load, never a crash.
import Foundation
import LoRATestSupport
import SwiftLoRA
import Testing

@Suite("GPT-2 model folders")
struct ModelFolderTests {
    let directory: String = {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("lora-folder-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url.path
    }()

    func folder(config: String, model: String = fixtures + "/model.safetensors") throws -> String {
        try config.write(toFile: directory + "/config.json", atomically: true, encoding: .utf8)
        if !FileManager.default.fileExists(atPath: directory + "/model.safetensors") {
            try FileManager.default.copyItem(atPath: model, toPath: directory + "/model.safetensors")
        }
        return directory
    }

    @Test("thousands of mutated config.json files: a clear error or a correct load")
    func fuzzConfig() throws {
        let original = Array(try String(contentsOfFile: fixtures + "/config.json", encoding: .utf8).utf8)
        var generator = SeededGenerator(seed: 17)
        var (loaded, rejected) = (0, 0)
        let pieces = Array("0123456789-.eE{}[]\",: truefalsnl".utf8)
        for round in 0..<2000 {
            var bytes = original
            switch round % 3 {
            case 0: bytes.removeLast(Int.random(in: 1...bytes.count, using: &generator))
            case 1:
                for _ in 0..<Int.random(in: 1...3, using: &generator) {
                    bytes[Int.random(in: 0..<bytes.count, using: &generator)] = pieces.randomElement(using: &generator)!
                }
            default:
                let digits = bytes.indices.filter { (48...57).contains(bytes[$0]) }
                bytes[digits.randomElement(using: &generator)!] = UInt8.random(in: 48...57, using: &generator)
            }
            do {
                let model = try GPT2Model(folder: folder(config: String(decoding: bytes, as: UTF8.self)), backend: CPUBackend.shared)
                #expect(model.config.width == 32 && model.config.vocabSize == 400)  // a load means the shapes fit
                loaded += 1
            } catch let error as FormatError {
                #expect(error.description.contains("config.json") || error.description.contains("model.safetensors"))
                rejected += 1
            }
        }
        #expect(loaded > 50 && rejected > 500, "loaded \(loaded), rejected \(rejected)")
    }

    @Test("config fields that change the math unsupportedly are refused by name", arguments: [
        ("\"activation_function\": \"gelu_new\"", "\"activation_function\": \"relu\"", "activation_function"),
        ("\"model_type\": \"gpt2\"", "\"model_type\": \"llama\"", "model_type"),
        ("\"scale_attn_by_inverse_layer_idx\": false", "\"scale_attn_by_inverse_layer_idx\": true", "scale_attn_by_inverse_layer_idx"),
        ("\"reorder_and_upcast_attn\": false", "\"reorder_and_upcast_attn\": true", "reorder_and_upcast_attn"),
        ("\"n_head\": 4", "\"n_head\": 5", "n_head"),
        ("\"n_embd\": 32", "\"n_embd\": 64", "implies"),
        ("\"n_layer\": 2", "\"n_layer\": 3", "missing tensor"),
    ])
    func refusedConfig(original: String, replacement: String, named: String) throws {
        let text = try String(contentsOfFile: fixtures + "/config.json", encoding: .utf8)
        #expect(text.contains(original))
        let error = #expect(throws: FormatError.self) {
            try GPT2Model(folder: folder(config: text.replacingOccurrences(of: original, with: replacement)), backend: CPUBackend.shared)
        }
        #expect(error?.description.contains(named) == true, "\(String(describing: error))")
    }

    @Test("vocab_size is bounded by int32 ids and the embedding table's tensor size, no longer by float ids (2^24)")
    func vocabularyLimit() throws {
        let large = (1 << 24) + 3
        #expect(try GPT2Config(vocabSize: large, positions: 8, width: 64, layers: 1, heads: 2).vocabSize == large)
        let text = try String(contentsOfFile: fixtures + "/config.json", encoding: .utf8)
        #expect(text.contains("\"vocab_size\": 400"))
        let path = directory + "/large-vocab.json"
        try text.replacingOccurrences(of: "\"vocab_size\": 400", with: "\"vocab_size\": \(large)")
            .write(toFile: path, atomically: true, encoding: .utf8)
        #expect(try GPT2Config(contentsOf: path).vocabSize == large)
        // [2^26, 64] is 2^32 elements: more than one tensor holds.
        let table = #expect(throws: FormatError.self) {
            try GPT2Config(vocabSize: 1 << 26, positions: 8, width: 64, layers: 1, heads: 2)
        }
        #expect(table?.description.contains("vocab_size 67108864 × n_embd 64") == true, "\(String(describing: table))")
        let ids = #expect(throws: FormatError.self) {
            try GPT2Config(vocabSize: Int(Int32.max) + 1, positions: 8, width: 1, layers: 1, heads: 1)
        }
        #expect(ids?.description.contains("token ids are int32") == true, "\(String(describing: ids))")
        #expect(throws: FormatError.self) { try GPT2Config(vocabSize: 0, positions: 8, width: 64, layers: 1, heads: 2) }
    }

    @Test("tokens outside the vocabulary or beyond the positions are clear errors")
    func badTokens() throws {
        let model = try GPT2Model(folder: fixtures, backend: CPUBackend.shared)
        #expect(throws: LoRAError.self) { try model.forward([[1, 400]]) }
        #expect(throws: LoRAError.self) { try model.forward([[1, 2], [3]]) }
        #expect(throws: LoRAError.self) { try model.forward([Array(repeating: 1, count: 33)]) }
        #expect(throws: LoRAError.self) { try model.loss([[5]]) }
        #expect(throws: (any Error).self) { try model.applyLoRA(LoRAConfig(targets: .names(["wte"]))) }
    }

    @Test("names without the transformer. prefix, an explicit lm_head and the mask buffers load; foreign tensors do not")
    func variants() throws {
        let source = try SafeTensorsFile(path: fixtures + "/model.safetensors")
        var items: [SafeTensorsWriter.Item] = []
        for name in source.names {
            items.append(.float32(String(name.dropFirst("transformer.".count)), shape: try source.entry(name).shape,
                                  values: try source.floats(name)))
        }
        let wte = try source.floats("transformer.wte.weight")
        items.append(.float32("lm_head.weight", shape: [400, 32], values: wte))
        items.append(.float32("h.0.attn.bias", shape: [1, 1, 32, 32], values: Array(repeating: 1, count: 1024)))
        try FileManager.default.copyItem(atPath: fixtures + "/config.json", toPath: directory + "/config.json")
        try SafeTensorsWriter.write(items, to: directory + "/model.safetensors")
        let expected = try Expected()
        let model = try GPT2Model(folder: directory, backend: CPUBackend.shared)
        #expect(logitMismatch(try model.forward(expected.tokens).toArray(), try expected.values("base_logits")) == nil)
        // A foreign tensor is refused by name.
        items.append(.float32("score.weight", shape: [2, 32], values: Array(repeating: 0, count: 64)))
        try SafeTensorsWriter.write(items, to: directory + "/model.safetensors")
        let error = #expect(throws: FormatError.self) { try GPT2Model(folder: directory, backend: CPUBackend.shared) }
        #expect(error?.description.contains("score.weight") == true)
    }
}
