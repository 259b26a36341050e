// GPT-2 weights in their file's dtype: a bf16 copy of gpt2-tiny keeps its matrices bf16 on the device (half the
// bytes) and gives exactly the logits of the f32 fixture converted to bf16 at load; a model saved in shards reloads
// with identical logits and dtypes; integer weights and foreign tensors are refused by name, in shards too.
// Each runs once per device (`devices`), so these names do not start with "OpenCL".
import Foundation
@testable import LoRAGPT2
import LoRATestSupport
import SwiftLoRA
import Testing

@Suite("GPT-2 weight storage")
struct GPT2StorageTests {
    let directory: String = {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("lora-gpt2-storage-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url.path
    }()

    /// Elements in gpt2-tiny's matrices (wte, wpe, the projections); the rest are layer norms and biases.
    static func matrixElements(_ model: GPT2Model) -> Int {
        model.wte.count + model.wpe.count + model.linearModules.reduce(0) { $0 + $1.inFeatures * $1.outFeatures }
    }

    /// The fixture rewritten with `convert(name)` choosing each tensor's dtype (rounded as torch rounds).
    func copyFixture(to folder: String, _ convert: (String) -> SafeTensorsDType) throws {
        let source = try SafeTensorsFile(path: fixtures + "/model.safetensors")
        let items = try source.names.map { name in
            SafeTensorsWriter.Item.floats(name, dtype: convert(name), shape: try source.entry(name).shape, values: try source.floats(name))
        }
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try SafeTensorsWriter.write(items, metadata: ["format": "pt"], to: folder + "/model.safetensors")
        try FileManager.default.copyItem(atPath: fixtures + "/config.json", toPath: folder + "/config.json")
    }

    @Test("a bf16 checkpoint stays bf16 on the device and equals the f32 one converted at load", arguments: GPT2FixtureTests.devices)
    func bf16(device: String) throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let backend = try testBackend(device)
        let tokens = try Expected().tokens
        // Matrices bf16, norms and biases float32: what a bf16 model of this project saves.
        let isMatrix = { (name: String) in name.hasSuffix(".weight") && !name.contains("ln_") }
        try copyFixture(to: directory + "/bf16") { isMatrix($0) ? .bf16 : .f32 }
        let f32 = try GPT2Model(folder: fixtures, backend: backend)
        let bf16 = try GPT2Model(folder: directory + "/bf16", backend: backend)
        let matrices = Self.matrixElements(f32)
        #expect(bf16.weightBytes == f32.weightBytes - 2 * matrices)
        #expect(bf16.weightBytes < f32.weightBytes * 6 / 10)  // about half: gpt2-tiny is nearly all matrices
        #expect(bf16.linearModules.allSatisfy { $0.dense!.weight.dtype == .bfloat16 && $0.dense!.bias!.dtype == .float32 })
        let converted = try GPT2Model(folder: fixtures, backend: backend, options: ModelLoadOptions(dtype: .bfloat16))
        #expect(converted.weightBytes == bf16.weightBytes)
        for ((name, a), (otherName, b)) in zip(converted.namedWeights, bf16.namedWeights) {
            let (bytesA, bytesB) = (try backend.downloadBytes(a), try backend.downloadBytes(b))
            #expect(name == otherName && a.dtype == b.dtype && bytesA == bytesB, "\(name)")
        }
        let logits = try bf16.forward(tokens).toArray()
        #expect(try converted.forward(tokens).toArray() == logits)
        // bf16 keeps about 3 significant digits: close to the f32 logits, and not equal to them.
        let reference = try f32.forward(tokens).toArray()
        #expect(logits != reference)
        #expect(firstMismatch(logits, reference, atol: 0.05 * (reference.map(abs).max() ?? 1), rtol: 0) == nil)
        // The fixture's adapter on the bf16 base: merging adds in float32 and rounds once to bf16, so the merged
        // logits stay close to the unmerged ones; the merged model saves as bf16 and reloads bit for bit.
        try bf16.loadAdapter(folder: fixtures + "/adapter")
        #expect(try bf16.loss(tokens, gradients: true).loss.isFinite)
        let adapted = try bf16.forward(tokens).toArray()
        try bf16.mergeAdapters()
        let merged = try bf16.forward(tokens).toArray()
        #expect(firstMismatch(merged, adapted, atol: 0.05 * (adapted.map(abs).max() ?? 1), rtol: 0) == nil)
        try bf16.save(folder: directory + "/merged")
        let reloaded = try GPT2Model(folder: directory + "/merged", backend: backend)
        #expect(reloaded.weightBytes == converted.weightBytes)
        #expect(try reloaded.forward(tokens).toArray() == merged)
        // Full fine-tuning updates the weights in float32 and refuses 16-bit ones.
        let error = #expect(throws: LoRAConfigError.self) { try converted.enableFullTraining() }
        #expect(error.map { "\($0)".contains("bfloat16") } == true)

        // A file bf16 throughout (as torch's `.to(torch.bfloat16)` saves it): norms and biases still land in float32.
        try copyFixture(to: directory + "/all-bf16") { _ in .bf16 }
        let all = try GPT2Model(folder: directory + "/all-bf16", backend: backend)
        #expect(all.namedWeights.allSatisfy { ($0.name.contains("ln_") || $0.name.hasSuffix(".bias")) == ($0.tensor.dtype == .float32) })
        #expect(all.weightBytes == bf16.weightBytes)
        // And `dtype: float32` widens a bf16 file.
        let widened = try GPT2Model(folder: directory + "/bf16", backend: backend, options: ModelLoadOptions(dtype: .float32))
        #expect(widened.weightBytes == f32.weightBytes)
        #expect(try widened.forward(tokens).toArray() == logits)
    }

    @Test("saved in shards with an index, typed, it reloads with identical logits", arguments: GPT2FixtureTests.devices)
    func shards(device: String) throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let backend = try testBackend(device)
        let tokens = try Expected().tokens
        for dtype in [DType.float32, .bfloat16] {
            let model = try GPT2Model(folder: fixtures, backend: backend, options: ModelLoadOptions(dtype: dtype))
            let folder = directory + "/\(dtype)"
            try model.save(folder: folder, maxShardBytes: 20_000)
            let files = try FileManager.default.contentsOfDirectory(atPath: folder)
            let shards = files.filter { $0.hasPrefix("model-") && $0.hasSuffix(".safetensors") }
            #expect(shards.count >= 3 && files.contains("model.safetensors.index.json") && !files.contains("model.safetensors"), "\(files)")
            let checkpoint = try SafeTensorsCheckpoint(folder: folder)
            #expect(checkpoint.names.allSatisfy { $0.hasPrefix("transformer.") }, "\(checkpoint.names)")
            #expect(try checkpoint.entry("transformer.h.1.mlp.c_fc.weight").dtype == dtype.safeTensors)
            #expect(try checkpoint.entry("transformer.h.1.ln_2.bias").dtype == .f32)
            let config = try JSONValue.parse(Data(contentsOf: URL(fileURLWithPath: folder + "/config.json"))).objectValue ?? [:]
            #expect(config["dtype"] == .string(dtype.rawValue) && config["tie_word_embeddings"] == .bool(true))
            let reloaded = try GPT2Model(folder: folder, backend: backend)
            #expect(reloaded.weightBytes == model.weightBytes)
            #expect(try reloaded.forward(tokens).toArray() == (try model.forward(tokens).toArray()))
        }
    }

    @Test("an integer weight and a foreign tensor are refused by name, in a single file and in shards")
    func refused() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try copyFixture(to: directory + "/int") { _ in .f32 }
        let source = try SafeTensorsFile(path: fixtures + "/model.safetensors")
        func rewrite(_ folder: String, replacing: String?, adding extra: SafeTensorsWriter.Item?) throws {
            var items = try source.names.filter { $0 != replacing }.map { name in
                SafeTensorsWriter.Item.float32(name, shape: try source.entry(name).shape, values: try source.floats(name))
            }
            if let extra { items.append(extra) }
            try SafeTensorsWriter.write(items, to: folder + "/model.safetensors")
        }
        let name = "transformer.h.1.attn.c_proj.weight"
        try rewrite(directory + "/int", replacing: name, adding: .int64(name, shape: [32, 32], values: Array(repeating: 1, count: 1024)))
        let integer = #expect(throws: FormatError.self) { try GPT2Model(folder: directory + "/int", backend: CPUBackend.shared) }
        #expect(integer.map { "\($0)".contains(name) && "\($0)".contains("I64") } == true, "\(String(describing: integer))")

        // A foreign tensor in one shard of a sharded folder: the error names it and its shard.
        let model = try GPT2Model(folder: fixtures, backend: CPUBackend.shared)
        try model.save(folder: directory + "/sharded", maxShardBytes: 20_000)
        let shard = directory + "/sharded/model-00002-of-" + (try FileManager.default.contentsOfDirectory(atPath: directory + "/sharded")
            .first { $0.hasPrefix("model-00001-of-") }!.dropFirst("model-00001-of-".count))
        let file = try SafeTensorsFile(path: shard)
        var items = try file.names.map { SafeTensorsWriter.Item.float32($0, shape: try file.entry($0).shape, values: try file.floats($0)) }
        items.append(.float32("transformer.h.0.attn.rotary.weight", shape: [4], values: [0, 0, 0, 0]))
        try SafeTensorsWriter.write(items, to: shard)
        let foreign = #expect(throws: FormatError.self) { try GPT2Model(folder: directory + "/sharded", backend: CPUBackend.shared) }
        let message = foreign.map { "\($0)" } ?? ""
        #expect(message.contains("transformer.h.0.attn.rotary.weight") && message.contains("model-00002-of-"), "\(message)")
    }
}
