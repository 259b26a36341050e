// bitsandbytes 4-bit folders as transformers saves them (Tests/Fixtures/llama-tiny-nf4, gpt2-tiny-nf4, written by
// make_qlora_fixtures.py): every quantized module found and read, the rest left alone, the weights dequantizing to
// what bitsandbytes computed, quantizing the float sources giving the saved bytes; quantization_config; hostile
// files (each error a FormatError naming the tensor); write → read round trips.
import Foundation
import LoRAFormats
@testable import LoRAQuantization
import LoRARuntime
import Testing

@Suite("bitsandbytes 4-bit files")
struct BitsAndBytesFormatTests {
    struct Model: Sendable, CustomStringConvertible {
        let folder: String, source: String, modules: [String], unquantized: [String]
        let conv1D: Bool
        var description: String { folder }
    }

    static let models = [
        Model(folder: "llama-tiny-nf4", source: "llama-tiny",
              modules: (0..<2).flatMap { i in ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                               "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"].map { "model.layers.\(i).\($0)" } },
              unquantized: ["model.embed_tokens", "lm_head", "model.norm", "model.layers.0.input_layernorm"], conv1D: false),
        Model(folder: "gpt2-tiny-nf4", source: "gpt2-tiny-nf4/float",
              modules: (0..<2).flatMap { i in ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"].map { "transformer.h.\(i).\($0)" } },
              unquantized: ["transformer.wte", "transformer.wpe", "transformer.ln_f", "transformer.h.0.ln_1", "lm_head"], conv1D: true),
    ]

    @Test("every quantized module is found; embeddings, norms and lm_head are not", arguments: models)
    func detection(model: Model) throws {
        let checkpoint = try SafeTensorsCheckpoint(folder: NF4Fixtures.path(model.folder))
        #expect(checkpoint.quantizedModules == model.modules.sorted())
        #expect(try checkpoint.validateQuantizedModules() == model.modules.sorted())
        for module in model.modules { #expect(checkpoint.isQuantized(module: module)) }
        for module in model.unquantized { #expect(!checkpoint.isQuantized(module: module), "\(module)") }
        // Every tensor is a quantized module's, or a float tensor of the model.
        for name in checkpoint.names {
            let owner = BitsAndBytes4Bit.module(ofStatistic: name) ?? (name.hasSuffix(".weight") ? String(name.dropLast(7)) : nil)
            if let owner, model.modules.contains(owner) { continue }
            #expect(try checkpoint.entry(name).dtype == .f32, "\(name)")
        }
    }

    @Test("read weights dequantize to bitsandbytes' values; quantizing the float source gives the saved bytes",
          arguments: models)
    func values(model: Model) throws {
        let checkpoint = try SafeTensorsCheckpoint(folder: NF4Fixtures.path(model.folder))
        let source = try SafeTensorsCheckpoint(folder: NF4Fixtures.path(model.source))
        let expected = try SafeTensorsFile(path: NF4Fixtures.path(model.folder + "/expected.safetensors"))
        var straddling = 0
        for module in model.modules {
            let weight = try checkpoint.readNF4(module: module)
            #expect(weight.blocksize == 64 && weight.isDoubleQuantized && weight.dtype == .float32)
            let reference = try expected.floats("dequantized.\(module).weight")
            #expect(NF4Fixtures.bits(weight.dequantize()) == NF4Fixtures.bits(reference), "\(module)")
            // The float source: GPT-2's Conv1D stores [in, out]; transformers quantizes the transpose.
            var values = try source.floats(module + ".weight")
            let shape = try source.entry(module + ".weight").shape
            if model.conv1D {
                #expect(shape == [weight.columns, weight.rows])
                values = (0..<values.count).map { e in values[(e % weight.columns) * weight.rows + e / weight.columns] }
            } else {
                #expect(shape == [weight.rows, weight.columns])
            }
            let mine = try NF4HostWeight.quantize(values, rows: weight.rows, columns: weight.columns, name: module)
            #expect(mine == weight, "\(module)")
            straddling += weight.columns % 64 != 0 ? 1 : 0
            // Straight from the mapped file to the device, equal to the host weight's upload.
            let device = try checkpoint.uploadNF4(module: module, to: CPUBackend.shared)
            #expect(try NF4HostWeight(downloading: device) == weight)
        }
        #expect(straddling > 0, "blocks should straddle rows somewhere")
    }

    @Test("quantization_config: read from config.json, written as transformers writes it", arguments: models)
    func quantizationConfig(model: Model) throws {
        let path = NF4Fixtures.path(model.folder + "/config.json")
        let config = try JSONValue.readObject(path: path)
        let parsed = try #require(try BitsAndBytesQuantizationConfig(config: config, path: path))
        #expect(parsed == BitsAndBytesQuantizationConfig(doubleQuantization: true, computeDType: .float32))
        let written = try JSONValue.parse(Data(parsed.json.serialized().utf8))
        #expect(written == config["quantization_config"])
        // A config without one is not quantized.
        let plain = try JSONValue.readObject(path: NF4Fixtures.path(model.source + "/config.json"))
        #expect(try BitsAndBytesQuantizationConfig(config: plain, path: "config.json") == nil)
    }

    @Test("quantization_config refuses what is not 4-bit NF4 bitsandbytes, by name")
    func badQuantizationConfig() throws {
        let good = BitsAndBytesQuantizationConfig().json.objectValue!
        func variant(_ changes: [String: JSONValue?]) -> [String: JSONValue] {
            var q = good
            for (k, v) in changes { q[k] = v }
            return ["quantization_config": .object(q)]
        }
        let cases: [([String: JSONValue?], String)] = [
            (["bnb_4bit_quant_type": .string("fp4")], "fp4"),
            (["bnb_4bit_quant_type": nil], "fp4"),  // transformers' default
            (["load_in_8bit": .bool(true), "load_in_4bit": .bool(false), "_load_in_4bit": .bool(false)], "load_in_8bit"),
            (["quant_method": .string("gptq")], "gptq"),
            (["bnb_4bit_quant_storage": .string("bfloat16")], "bnb_4bit_quant_storage"),
            (["bnb_4bit_compute_dtype": .string("float64")], "bnb_4bit_compute_dtype"),
            (["bnb_4bit_use_double_quant": .string("yes")], "bnb_4bit_use_double_quant"),
        ]
        for (changes, word) in cases {
            #expect {
                _ = try BitsAndBytesQuantizationConfig(config: variant(changes), path: "/x/config.json")
            } throws: { error in
                guard let e = error as? FormatError else { return false }
                return "\(e)".contains("/x/config.json") && "\(e)".contains(word)
            }
        }
        let bf16 = try BitsAndBytesQuantizationConfig(config: variant(["bnb_4bit_compute_dtype": .string("torch.bfloat16"),
                                                                        "bnb_4bit_use_double_quant": .bool(false)]), path: "c")
        #expect(bf16?.computeDType == .bfloat16 && bf16?.doubleQuantization == false)
    }

    // MARK: - Hostile files

    /// A file holding one quantized module `m` (and a float norm), its items changed by `mutate` before writing.
    static func file(doubleQuant: Bool = true,
                     _ mutate: (inout [SafeTensorsWriter.Item]) throws -> Void) throws -> SafeTensorsFile {
        let values = (0..<(7 * 45)).map { Float(sin(Double($0) * 0.37)) }
        let weight = try NF4HostWeight.quantize(values, rows: 7, columns: 45, doubleQuantization: doubleQuant)
        var items = weight.safeTensorsItems(module: "m")
        items.append(.float32("norm.weight", shape: [3], values: [1, 2, 3]))
        try mutate(&items)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("nf4-\(UUID().uuidString).safetensors").path
        try SafeTensorsWriter.write(items, to: path)
        defer { unlink(path) }  // the mapping outlives the name
        return try SafeTensorsFile(path: path)
    }

    static func replace(_ items: inout [SafeTensorsWriter.Item], _ name: String, with item: SafeTensorsWriter.Item?) {
        let i = items.firstIndex { $0.name == name }!
        if let item { items[i] = item } else { items.remove(at: i) }
    }

    static func state(_ json: String, name: String = "m.weight.quant_state.bitsandbytes__nf4") -> SafeTensorsWriter.Item {
        .init(name: name, dtype: .u8, shape: [json.utf8.count], bytes: Data(json.utf8))
    }

    static let goodJSON = #"{"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": [7, 45], "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": 0.5}"#

    /// Reading `m` from the mutated file fails with a FormatError whose text holds every word.
    static func expectFailure(_ words: [String], doubleQuant: Bool = true,
                              _ mutate: (inout [SafeTensorsWriter.Item]) throws -> Void,
                              sourceLocation: SourceLocation = #_sourceLocation) throws {
        let file = try file(doubleQuant: doubleQuant, mutate)
        do {
            _ = try file.readNF4(module: "m")
            Issue.record("read succeeded; expected an error with \(words)", sourceLocation: sourceLocation)
        } catch let error as FormatError {
            let text = "\(error)"
            for word in words where !text.contains(word) {
                Issue.record("\(text) lacks \(JSONValue.quote(word))", sourceLocation: sourceLocation)
            }
        }
    }

    @Test("the unmutated file reads back")
    func unmutated() throws {
        let file = try Self.file { _ in }
        #expect(file.quantizedModules == ["m"])
        #expect(try file.readNF4(module: "m").rows == 7)
    }

    @Test("corrupt or inconsistent quant_state JSON names the tensor")
    func badQuantState() throws {
        let s = "m.weight.quant_state.bitsandbytes__nf4"
        func withJSON(_ json: String) -> (inout [SafeTensorsWriter.Item]) -> Void {
            { Self.replace(&$0, s, with: Self.state(json)) }
        }
        try Self.expectFailure([s, "JSON"], withJSON("{\"quant_type\": \"nf4\", "))
        try Self.expectFailure([s, "JSON"], withJSON("[1, 2]"))
        try Self.expectFailure([s, "blocksize 48", "power"], withJSON(Self.goodJSON.replacingOccurrences(of: "64", with: "48")))
        try Self.expectFailure([s, "blocksize 16"], withJSON(Self.goodJSON.replacingOccurrences(of: "\"blocksize\": 64", with: "\"blocksize\": 16")))
        try Self.expectFailure(["m.weight", "[7, 46]"], withJSON(Self.goodJSON.replacingOccurrences(of: "[7, 45]", with: "[7, 46]")))
        try Self.expectFailure([s, "shape"], withJSON(Self.goodJSON.replacingOccurrences(of: "[7, 45]", with: "[7, -45]")))
        try Self.expectFailure([s, "2-D"], withJSON(Self.goodJSON.replacingOccurrences(of: "[7, 45]", with: "[315]")))
        try Self.expectFailure([s, "\"int8\""], withJSON(Self.goodJSON.replacingOccurrences(of: "\"dtype\": \"float32\"", with: "\"dtype\": \"int8\"")))
        try Self.expectFailure([s, "unknown key", "extra"], withJSON(Self.goodJSON.replacingOccurrences(of: "{", with: "{\"extra\": 1, ")))
        try Self.expectFailure([s, "nested_offset"], withJSON(Self.goodJSON.replacingOccurrences(of: ", \"nested_offset\": 0.5", with: "")))
        try Self.expectFailure([s, "nested_offset"], withJSON(Self.goodJSON.replacingOccurrences(of: "0.5}", with: "\"x\"}")))
        try Self.expectFailure([s, "quant_type"], withJSON(Self.goodJSON.replacingOccurrences(of: "\"nf4\"", with: "\"fp4\"")))
        try Self.expectFailure([s, "no \"blocksize\""], withJSON(Self.goodJSON.replacingOccurrences(of: "\"blocksize\": 64, ", with: "")))
        try Self.expectFailure([s, "nested_dtype"], withJSON(Self.goodJSON.replacingOccurrences(of: "\"nested_dtype\": \"float32\"", with: "\"nested_dtype\": \"float16\"")))
        // A quant_state that is not bytes.
        try Self.expectFailure([s, "U8"]) { Self.replace(&$0, s, with: .float32(s, shape: [2], values: [1, 2])) }
        // bytes that are not UTF-8
        try Self.expectFailure([s, "UTF-8"]) { Self.replace(&$0, s, with: .init(name: s, dtype: .u8, shape: [3], bytes: Data([0xFF, 0xFE, 0x7B]))) }
    }

    @Test("FP4 and unknown quant types, other storages and code books are refused by name")
    func unsupported() throws {
        let s = "m.weight.quant_state.bitsandbytes__nf4"
        try Self.expectFailure(["fp4", "only nf4"]) { items in
            Self.replace(&items, s, with: nil)
            items.append(Self.state(Self.goodJSON.replacingOccurrences(of: "nf4", with: "fp4"), name: "m.weight.quant_state.bitsandbytes__fp4"))
        }
        try Self.expectFailure(["bitsandbytes__int4", "\"int4\""]) { items in
            Self.replace(&items, s, with: nil)
            items.append(Self.state(Self.goodJSON.replacingOccurrences(of: "nf4", with: "int4"), name: "m.weight.quant_state.bitsandbytes__int4"))
        }
        // bnb_4bit_quant_storage other than uint8: the packed weight in another dtype.
        try Self.expectFailure(["m.weight", "uint8", "F32"]) { Self.replace(&$0, "m.weight", with: .float32("m.weight", shape: [4], values: [0, 0, 0, 0])) }
        try Self.expectFailure(["m.weight.quant_map", "code book"]) { items in
            var map = BitsAndBytesCodebook.nf4
            map[3] += 0.01
            Self.replace(&items, "m.weight.quant_map", with: .float32("m.weight.quant_map", shape: [16], values: map))
        }
        // A module with only statistics.
        let file = try Self.file { items in Self.replace(&items, s, with: nil) }
        #expect(throws: FormatError.self) { try file.readNF4(module: "m") }
        #expect(file.quantizedModules.isEmpty)
    }

    @Test("statistics of the wrong size or kind name their tensor")
    func badStatistics() throws {
        try Self.expectFailure(["m.weight.absmax", "4 codes", "expected 5"]) {
            Self.replace(&$0, "m.weight.absmax", with: .init(name: "m.weight.absmax", dtype: .u8, shape: [4], bytes: Data([1, 2, 3, 4])))
        }
        try Self.expectFailure(["m.weight.absmax", "6 elements", "expected 5"], doubleQuant: false) {
            Self.replace(&$0, "m.weight.absmax", with: .float32("m.weight.absmax", shape: [6], values: [1, 1, 1, 1, 1, 1]))
        }
        try Self.expectFailure(["m.weight.absmax", "F32"]) {  // float absmax but a nested offset
            Self.replace(&$0, "m.weight.absmax", with: .float32("m.weight.absmax", shape: [5], values: [1, 1, 1, 1, 1]))
        }
        try Self.expectFailure(["m.weight.nested_absmax", "2 elements", "expected 1"]) {
            Self.replace(&$0, "m.weight.nested_absmax", with: .float32("m.weight.nested_absmax", shape: [2], values: [1, 1]))
        }
        try Self.expectFailure(["m.weight.nested_quant_map", "expected 256"]) {
            Self.replace(&$0, "m.weight.nested_quant_map", with: .float32("m.weight.nested_quant_map", shape: [16], values: BitsAndBytesCodebook.nf4))
        }
        try Self.expectFailure(["m.weight.nested_absmax", "missing"]) { Self.replace(&$0, "m.weight.nested_absmax", with: nil) }
        try Self.expectFailure(["m.weight.absmax", "missing"]) { Self.replace(&$0, "m.weight.absmax", with: nil) }
        try Self.expectFailure(["m.weight", "missing"]) { Self.replace(&$0, "m.weight", with: nil) }
        try Self.expectFailure(["m.weight", "157 bytes", "158"]) {
            Self.replace(&$0, "m.weight", with: .init(name: "m.weight", dtype: .u8, shape: [157, 1], bytes: Data(count: 157)))
        }
        try Self.expectFailure(["m.weight.nested_absmax", "element 0", "nan"]) {
            Self.replace(&$0, "m.weight.nested_absmax", with: .float32("m.weight.nested_absmax", shape: [1], values: [.nan]))
        }
        try Self.expectFailure(["m.weight.nested_absmax", "no nested_offset"], doubleQuant: false) { items in
            items.append(.float32("m.weight.nested_absmax", shape: [1], values: [1]))
        }
    }

    @Test("a checkpoint with a stray statistic, or truncated, is refused naming a tensor")
    func badCheckpoints() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("nf4-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let weight = try NF4HostWeight.quantize((0..<640).map { Float($0 % 13) - 6 }, rows: 10, columns: 64)
        var items = weight.safeTensorsItems(module: "a")
        items.append(.float32("b.weight.absmax", shape: [2], values: [1, 2]))
        try SafeTensorsWriter.writeCheckpoint(items, to: folder)
        let checkpoint = try SafeTensorsCheckpoint(folder: folder)
        #expect {
            try checkpoint.validateQuantizedModules()
        } throws: { "\($0)".contains("b.weight.absmax") && "\($0)".contains("without a quant_state") }
        // Truncated: the safetensors header's ranges no longer fit and the reader names a tensor.
        let file = folder + "/model.safetensors"
        let data = try Data(contentsOf: URL(fileURLWithPath: file))
        try data.prefix(data.count - 40).write(to: URL(fileURLWithPath: file))
        #expect {
            _ = try SafeTensorsCheckpoint(folder: folder)
        } throws: { error in
            guard let e = error as? FormatError, case .invalid = e else { return false }
            return "\(e)".contains("tensor '") && "\(e)".contains("data_offsets")
        }
    }

    // MARK: - Round trips

    @Test("write → read: items as transformers names and shapes them; a folder reads back equal",
          arguments: [true, false])
    func roundTrip(doubleQuant: Bool) throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("nf4-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        var generator = SystemRandomNumberGenerator()
        let shapes = [(7, 45), (300, 70), (1, 3), (64, 64)]
        var weights: [String: NF4HostWeight] = [:]
        var items: [SafeTensorsWriter.Item] = [.float32("model.norm.weight", shape: [4], values: [1, 2, 3, 4])]
        for (i, (rows, columns)) in shapes.enumerated() {
            let values = (0..<(rows * columns)).map { _ in Float.random(in: -2...2, using: &generator) }
            let blocksize = [64, 32, 4096, 128][i]
            let w = try NF4HostWeight.quantize(values, rows: rows, columns: columns, blocksize: blocksize,
                                               doubleQuantization: doubleQuant, dtype: i == 3 ? .bfloat16 : .float32)
            weights["layer\(i).proj"] = w
            let written = w.safeTensorsItems(module: "layer\(i).proj")
            #expect(written.map(\.name) == BitsAndBytes4Bit.tensorNames(module: "layer\(i).proj", doubleQuantized: doubleQuant))
            #expect(written.first { $0.name == "layer\(i).proj.weight" }?.shape == [(rows * columns + 1) / 2, 1])
            items += written
        }
        try SafeTensorsWriter.writeCheckpoint(items.sorted { $0.name < $1.name }, to: folder, maxShardBytes: 2000)
        let checkpoint = try SafeTensorsCheckpoint(folder: folder)
        #expect(checkpoint.files.count > 1, "sharded")
        #expect(try checkpoint.validateQuantizedModules() == weights.keys.sorted())
        for (module, weight) in weights {
            let read = try checkpoint.readNF4(module: module)
            #expect(read == weight, "\(module)")
            #expect(read.quantState == weight.quantState)
        }
        #expect(weights["layer3.proj"]!.quantState.dtype == "bfloat16")
        #expect(!checkpoint.isQuantized(module: "model.norm"))
    }

    @Test("a folder's tensors re-encoded from what was read are the bytes transformers wrote", arguments: models)
    func reencode(model: Model) throws {
        let checkpoint = try SafeTensorsCheckpoint(folder: NF4Fixtures.path(model.folder))
        for module in model.modules.prefix(3) {
            let items = try checkpoint.readNF4(module: module).safeTensorsItems(module: module)
            let encoded = try SafeTensorsFile(data: SafeTensorsWriter.encode(items))
            for item in items {
                #expect(try encoded.entry(item.name).shape == checkpoint.entry(item.name).shape, "\(item.name)")
                #expect(try encoded.withBytes(item.name) { Array($0) } == checkpoint.withBytes(item.name) { Array($0) }, "\(item.name)")
            }
        }
    }
}

extension SafeTensorsFile {
    /// A file from bytes in memory (written to a temporary file and mapped).
    convenience init(data: Data) throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("nf4-\(UUID().uuidString).safetensors").path
        try data.write(to: URL(fileURLWithPath: path))
        defer { unlink(path) }
        try self.init(path: path)
    }
}
