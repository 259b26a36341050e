// QLoRA models against transformers + PEFT + bitsandbytes (Tests/Fixtures/{llama-tiny-nf4, gpt2-tiny-nf4,
// llama-tiny-bf16-nf4}, written by make_qlora_fixtures.py with BitsAndBytesConfig(nf4, double quantization, float32
// compute); llama-tiny-bf16-nf4 quantized from bfloat16, so its quant_state dtype is bfloat16): the 4-bit folders
// load packed, their weights dequantize to bitsandbytes' values bit for bit, logits/loss/LoRA gradients and 10
// AdamW steps match PEFT on the 4-bit model, quantizing the float model at load gives the same bytes as
// bitsandbytes, a 4-bit model written here is transformers' folder byte for byte, and merging dequantizes.
// Both families live here because the 4-bit path is shared; each test runs once per (model, device).
import Foundation
import LoRATestSupport
import SwiftLoRA
import Testing

/// A 4-bit fixture folder, its float source, and what PEFT computed on it.
struct QLoRAFixture {
    let name: String
    let folder: String
    /// The float model bitsandbytes quantized.
    let floatFolder: String
    /// The quant_state dtype of its weights (the float model's dtype).
    let dtype: DType
    let file: SafeTensorsFile
    let tokens: [[Int]]

    init(_ name: String) throws {
        self.name = name
        folder = fixtureRoot + "/" + name
        (floatFolder, dtype) = switch name {
        case "gpt2-tiny-nf4": (folder + "/float", .float32)
        case "llama-tiny-bf16-nf4": (fixtureRoot + "/llama-tiny-bf16", .bfloat16)
        default: (fixtureRoot + "/llama-tiny", .float32)
        }
        file = try SafeTensorsFile(path: folder + "/expected.safetensors")
        let flat = try file.integers("tokens"), shape = try file.entry("tokens").shape
        tokens = (0..<shape[0]).map { Array(flat[$0 * shape[1]..<($0 + 1) * shape[1]]) }
    }

    func values(_ key: String) throws -> [Float] { try file.floats(key) }
    func model(_ device: String, options: ModelLoadOptions = ModelLoadOptions()) throws -> any LanguageModel {
        try ModelRegistry.standard.load(folder: folder, backend: testBackend(device), options: options)
    }

    static let names = ["llama-tiny-nf4", "gpt2-tiny-nf4", "llama-tiny-bf16-nf4"]
    static var cases: [(String, String)] { names.flatMap { name in TestDevices.names.map { (name, $0) } } }
}

@Suite("QLoRA models against PEFT + bitsandbytes")
struct QLoRAModelTests {
    @Test("a bitsandbytes folder loads 4-bit; every weight dequantizes to bitsandbytes' values bit for bit",
          arguments: QLoRAFixture.cases)
    func dequantizedWeights(name: String, device: String) throws {
        let fixture = try QLoRAFixture(name)
        let model = try fixture.model(device)
        #expect(model.quantizedModules.count == model.linearModules.count)
        #expect(model.quantization == NF4Options(blocksize: 64, doubleQuantization: true, computeDType: .float32))
        for module in model.linearModules {
            #expect(module.nf4!.weight.dtype == fixture.dtype, "\(module.name)")
            let dense = try module.nf4!.dequantized(dtype: .float32)
            #expect(try dense.weight.toArray() == fixture.values("dequantized.\(module.name).weight"), "\(module.name)")
        }
    }

    @Test("base and LoRA logits, the loss and every LoRA gradient match PEFT on the 4-bit model",
          arguments: QLoRAFixture.cases)
    func forwardBackward(name: String, device: String) throws {
        let fixture = try QLoRAFixture(name)
        let model = try fixture.model(device)
        #expect(logitMismatch(try model.forward(fixture.tokens).toArray(), try fixture.values("base_logits")) == nil)
        try model.loadAdapter(folder: fixture.folder + "/adapter")
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

    @Test("10 AdamW steps on the 4-bit base match PEFT; paged AdamW takes the same steps bit for bit",
          arguments: QLoRAFixture.cases)
    func adamWSteps(name: String, device: String) throws {
        let fixture = try QLoRAFixture(name)
        let reference = try fixture.values("train_losses"), lr = try fixture.values("train_lr")[0]
        var runs: [[Float]] = []
        for kind in [Optimizer.Kind.adamw, .pagedAdamW] {
            let model = try fixture.model(device)
            try model.loadAdapter(folder: fixture.folder + "/adapter")
            model.training = true
            let optimizer = try Optimizer(kind, parameters: model.trainableParameters)
            var losses: [Float] = []
            for step in 0..<reference.count {
                try model.zeroGradients()
                let loss = try model.loss(fixture.tokens, gradients: true).loss
                let tolerance: Float = step == 0 ? 1e-5 : 1e-4
                #expect(abs(loss - reference[step]) <= tolerance * abs(reference[step]), "\(kind) step \(step + 1): \(loss) vs \(reference[step])")
                losses.append(loss)
                try optimizer.update(learningRate: lr)
            }
            for p in model.trainableParameters {
                #expect(firstMismatch(try p.value.toArray(), try fixture.values("trained." + p.name), atol: 1e-4, rtol: 0) == nil, "\(p.name)")
            }
            runs.append(losses)
        }
        #expect(runs[0] == runs[1])
    }

    @Test("quantizing the float model at load gives bitsandbytes' bytes and the 4-bit folder's logits",
          arguments: QLoRAFixture.cases)
    func quantizeAtLoad(name: String, device: String) throws {
        let fixture = try QLoRAFixture(name)
        let backend = try testBackend(device)
        let quantized = try ModelRegistry.standard.load(folder: fixture.floatFolder, backend: backend,
                                                        options: ModelLoadOptions(quantization: NF4Options()))
        let checkpoint = try SafeTensorsCheckpoint(folder: fixture.folder)
        #expect(quantized.quantizedModules.count == quantized.linearModules.count)
        for module in quantized.linearModules {
            #expect(module.nf4!.weight.dtype == fixture.dtype, "\(module.name)")
            let ours = try NF4HostWeight(downloading: module.nf4!.weight)
            #expect(ours == (try checkpoint.readNF4(module: module.name)), "\(module.name)")
        }
        let loaded = try fixture.model(device)
        #expect(try quantized.forward(fixture.tokens).toArray() == loaded.forward(fixture.tokens).toArray())
    }

    @Test("a 4-bit model written here is transformers' folder tensor for tensor and loads back 4-bit",
          arguments: QLoRAFixture.names)
    func writeAndReload(name: String) throws {
        let fixture = try QLoRAFixture(name)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("lora-qlora-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let model = try fixture.model("cpu")
        try model.save(folder: directory)
        let (ours, theirs) = (try SafeTensorsCheckpoint(folder: directory), try SafeTensorsCheckpoint(folder: fixture.folder))
        #expect(ours.names == theirs.names)
        for tensor in theirs.names {
            #expect(try ours.entry(tensor).shape == theirs.entry(tensor).shape, "\(tensor)")
            // RMSNorm weights are kept (and written) in float32 whatever the file's dtype: the same values in a
            // bfloat16 folder. Everything else, the 4-bit tensors and their quant_state dtype included, is byte-equal.
            if tensor.hasSuffix("norm.weight"), try ours.entry(tensor).dtype == .f32, try theirs.entry(tensor).dtype == .bf16 {
                #expect(try ours.floats(tensor) == theirs.floats(tensor), "\(tensor)")
                continue
            }
            let same = try ours.withBytes(tensor) { a in try theirs.withBytes(tensor) { b in a.elementsEqual(b) } }
            #expect(same, "\(tensor)")
        }
        let config = try JSONValue.readObject(path: directory + "/config.json")
        #expect(try BitsAndBytesQuantizationConfig(config: config, path: "config.json") == BitsAndBytesQuantizationConfig())
        let reloaded = try ModelRegistry.standard.load(folder: directory, backend: CPUBackend.shared)
        #expect(reloaded.quantizedModules.count == model.quantizedModules.count)
        #expect(try reloaded.forward(fixture.tokens).toArray() == model.forward(fixture.tokens).toArray())
    }

    @Test("merging into a 4-bit base dequantizes it: the float model + adapter delta, written without quantization_config",
          arguments: QLoRAFixture.cases)
    func merge(name: String, device: String) throws {
        let fixture = try QLoRAFixture(name)
        let model = try fixture.model(device)
        try model.loadAdapter(folder: fixture.folder + "/adapter")
        #expect(throws: LoRAError.self) { try model.mergeAdapters() }
        let fresh = try fixture.model(device)
        try fresh.dequantizeBases(dtype: .float32)
        #expect(fresh.quantizedModules.isEmpty)
        try fresh.loadAdapter(folder: fixture.folder + "/adapter")
        try fresh.mergeAdapters()
        let merged = try fresh.forward(fixture.tokens).toArray()
        #expect(logitMismatch(merged, try fixture.values("merged_logits")) == nil)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("lora-qmerge-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try fresh.save(folder: directory)
        #expect(try JSONValue.readObject(path: directory + "/config.json")["quantization_config"] == nil)
        let reloaded = try ModelRegistry.standard.load(folder: directory, backend: fresh.backend)
        #expect(reloaded.quantizedModules.isEmpty)
        #expect(try reloaded.forward(fixture.tokens).toArray() == merged)
    }

    @Test("a 4-bit tensor outside the decoder's linears, or 4-bit tensors without quantization_config, are refused by name")
    func refusals() throws {
        let fixture = try QLoRAFixture("llama-tiny-nf4")
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("lora-qbad-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let checkpoint = try SafeTensorsCheckpoint(folder: fixture.folder)
        func copy(_ name: String) throws -> SafeTensorsWriter.Item {
            let entry = try checkpoint.entry(name)
            return SafeTensorsWriter.Item(name: name, dtype: entry.dtype, shape: entry.shape,
                                          bytes: try checkpoint.withBytes(name) { Data($0) })
        }
        // The embeddings stored 4-bit: a module bitsandbytes never quantizes.
        let embed = "model.embed_tokens"
        let shape = try checkpoint.entry(embed + ".weight").shape
        let quantized = try NF4HostWeight.quantize(try checkpoint.floats(embed + ".weight"), rows: shape[0], columns: shape[1])
        let items = try checkpoint.names.filter { $0 != embed + ".weight" }.map(copy) + quantized.safeTensorsItems(module: embed)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        _ = try SafeTensorsWriter.writeCheckpoint(items.sorted { $0.name < $1.name }, to: directory, maxShardBytes: 1 << 30)
        try FileManager.default.copyItem(atPath: fixture.folder + "/config.json", toPath: directory + "/config.json")
        do {
            _ = try ModelRegistry.standard.load(folder: directory, backend: CPUBackend.shared)
            Issue.record("a 4-bit embedding table loaded")
        } catch let error as FormatError {
            #expect("\(error)".contains("'model.embed_tokens' is stored 4-bit"), "\(error)")
        }
        // The linears 4-bit but config.json silent about it.
        var config = try JSONValue.readObject(path: fixture.folder + "/config.json")
        config["quantization_config"] = nil
        try Data(JSONValue.object(config).serialized().utf8).write(to: URL(fileURLWithPath: directory + "/config.json"))
        _ = try SafeTensorsWriter.writeCheckpoint(try checkpoint.names.map(copy), to: directory, maxShardBytes: 1 << 30)
        do {
            _ = try ModelRegistry.standard.load(folder: directory, backend: CPUBackend.shared)
            Issue.record("4-bit weights loaded without quantization_config")
        } catch let error as FormatError {
            #expect("\(error)".contains("no quantization_config"), "\(error)")
        }
    }
}
