// LlamaConfig against transformers 5.24 (Tests/Fixtures/llama-rope/config_cases.json, written by
// make_rope_fixtures.py): every config.json variant there is read here and must give what transformers built
// from it (sizes, the biases and norms the model has, sliding windows, RoPE); then each refused field.
import Foundation
import LoRAFormats
import Testing
@testable import LoRALlama

let llamaFixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures/llama-rope").path

/// One entry of config_cases.json.
struct ConfigCase {
    let name: String
    let ropeCase: Bool
    let config: [String: JSONValue]
    let expected: [String: JSONValue]

    static func all() throws -> [ConfigCase] {
        let path = llamaFixtures + "/config_cases.json"
        let data = try #require(FileManager.default.contents(atPath: path))
        let root = try #require(try JSONValue.parse(data).objectValue)
        return try #require(root["cases"]?.arrayValue).map { item in
            let o = try #require(item.objectValue)
            return ConfigCase(name: try #require(o["name"]?.stringValue), ropeCase: o["rope_case"] == .bool(true),
                              config: try #require(o["config"]?.objectValue), expected: try #require(o["expected"]?.objectValue))
        }
    }

    func int(_ key: String) -> Int? { expected[key]?.intValue }
    func ints(_ key: String) -> [Int]? { expected[key]?.arrayValue?.compactMap(\.intValue) }
    func floats(_ key: String) -> [Float]? { expected[key]?.arrayValue?.compactMap(\.doubleValue).map(Float.init) }
}

@Suite struct LlamaConfigTests {
    @Test func readsEveryFixtureConfigAsTransformersDoes() throws {
        let cases = try ConfigCase.all()
        #expect(cases.count >= 30)
        for c in cases {
            let config = try LlamaConfig(json: c.config, path: c.name)
            let e = c.expected
            let where_ = Comment(rawValue: c.name)
            #expect(config.family.rawValue == e["family"]?.stringValue, where_)
            #expect(config.vocabSize == c.int("vocab_size"), where_)
            #expect(config.hiddenSize == c.int("hidden_size"), where_)
            #expect(config.intermediateSize == c.int("intermediate_size"), where_)
            #expect(config.layers == c.int("layers"), where_)
            #expect(config.heads == c.int("heads"), where_)
            #expect(config.kvHeads == c.int("kv_heads"), where_)
            #expect(config.headDim == c.int("head_dim"), where_)
            #expect(config.maxPositions == c.int("max_positions"), where_)
            #expect(config.rmsNormEpsilon == e["rms_norm_eps"]?.doubleValue, where_)
            #expect(config.tieWordEmbeddings == e["tie"]?.boolValue, where_)
            #expect(config.qkvBias == e["qkv_bias"]?.boolValue, where_)
            #expect(config.outputBias == e["o_bias"]?.boolValue, where_)
            #expect(config.mlpBias == e["mlp_bias"]?.boolValue, where_)
            #expect(config.qkNorm == e["qk_norm"]?.boolValue, where_)
            #expect(config.slidingWindows == e["sliding_windows"]?.arrayValue?.map(\.intValue), where_)
            #expect(config.attentionDropout == e["attention_dropout"]?.doubleValue, where_)
            #expect(config.bosTokenIds == c.ints("bos"), where_)
            #expect(config.eosTokenIds == c.ints("eos"), where_)
            #expect(config.padTokenId == c.int("pad"), where_)
            #expect(config.dtype == e["dtype"]?.stringValue, where_)
            #expect(config.rawJSON == c.config, where_)

            let rope = try #require(e["rope_parameters"]?.objectValue, where_)
            #expect(config.ropeTheta == rope["rope_theta"]?.doubleValue, where_)
            #expect(config.ropeScaling.typeName == rope["rope_type"]?.stringValue, where_)
            switch config.ropeScaling {
            case .none: break
            case .linear(let factor): #expect(factor == rope["factor"]?.doubleValue, where_)
            case .llama3(let p):
                #expect(p.factor == rope["factor"]?.doubleValue, where_)
                #expect(p.lowFreqFactor == rope["low_freq_factor"]?.doubleValue, where_)
                #expect(p.highFreqFactor == rope["high_freq_factor"]?.doubleValue, where_)
                #expect(p.originalMaxPositions == rope["original_max_position_embeddings"]?.intValue, where_)
            case .yarn(let p):
                if let factor = rope["factor"]?.doubleValue { #expect(p.factor == factor, where_) }
                #expect(p.originalMaxPositions == rope["original_max_position_embeddings"]?.intValue, where_)
                #expect(p.attentionFactor == rope["attention_factor"]?.doubleValue, where_)
            }
            // The whole chain, parse to RoPE, against the module transformers built from the same file.
            let expectedInverse = try #require(c.floats("inv_freq"), where_)
            #expect(config.inverseFrequencies().map(\.bitPattern) == expectedInverse.map(\.bitPattern), where_)
            #expect(config.attentionScaling == Float(try #require(e["attention_scaling"]?.doubleValue)), where_)
        }
    }

    @Test func writesJSONThatReadsBackEqual() throws {
        for c in try ConfigCase.all() {
            var config = try LlamaConfig(json: c.config, path: c.name)
            let written = try #require(config.json.objectValue)
            var reread = try LlamaConfig(json: written, path: c.name + " (written)")
            (config.rawJSON, reread.rawJSON) = (nil, nil)
            #expect(reread == config, Comment(rawValue: c.name))
        }
    }

    /// With LORA_FIXTURE_EXPORT=DIR, writes each fixture config as `json` writes it to DIR/<case>/config.json, for
    /// `make_rope_fixtures.py --check DIR`, which loads them in transformers and compares with the fixture.
    @Test(.enabled(if: ProcessInfo.processInfo.environment["LORA_FIXTURE_EXPORT"] != nil))
    func exportWrittenConfigsForTransformers() throws {
        let root = try #require(ProcessInfo.processInfo.environment["LORA_FIXTURE_EXPORT"])
        for c in try ConfigCase.all() {
            let dir = root + "/" + c.name
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let json = try LlamaConfig(json: c.config, path: c.name).json
            try AtomicFile.write(Data(json.serialized().utf8), to: dir + "/config.json")
        }
    }

    @Test func configJSONKeepsTheFileAndChangesOnlyTheDType() throws {
        let original: [String: JSONValue] = [
            "model_type": .string("llama"), "hidden_size": .integer(64), "num_attention_heads": .integer(4),
            "num_hidden_layers": .integer(2), "intermediate_size": .integer(96), "vocab_size": .integer(128),
            "torch_dtype": .string("bfloat16"), "custom_field": .string("kept"), "rope_scaling": .null,
        ]
        let config = try LlamaConfig(json: original, path: "config.json")
        #expect(config.dtype == "bfloat16")
        var expected = original
        expected["torch_dtype"] = .string("float32")
        expected["dtype"] = .string("float32")
        #expect(config.configJSON(dtype: "float32") == .object(expected))

        let built = try LlamaConfig(family: .qwen2, vocabSize: 128, hiddenSize: 64, intermediateSize: 96, layers: 2,
                                    heads: 4, kvHeads: 2, maxPositions: 256)
        #expect(built.rawJSON == nil)
        #expect(built.configJSON(dtype: "float32").objectValue?["dtype"] == .string("float32"))
        #expect(built.configJSON(dtype: "float32").objectValue?["model_type"] == .string("qwen2"))
    }

    @Test func infersTheFamilyFromArchitecturesWithoutModelType() throws {
        let config = try LlamaConfig(json: tinyLlama(["model_type": nil, "architectures": .array([.string("Qwen2ForCausalLM")])]),
                                     path: "config.json")
        #expect(config.family == .qwen2)
        #expect(config.qkvBias && !config.outputBias)
    }

    @Test func readsAFile() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("llamacfg-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("config.json").path
        try Data(JSONValue.object(tinyLlama([:])).serialized().utf8).write(to: URL(fileURLWithPath: path))
        #expect(try LlamaConfig(contentsOf: path).headDim == 16)
        #expect(throws: FormatError.io(path: path + ".missing", reason: "cannot be read")) {
            try LlamaConfig(contentsOf: path + ".missing")
        }
        try Data("[1, 2]".utf8).write(to: URL(fileURLWithPath: path))
        #expect(throws: FormatError.invalid(path: path, reason: "not a JSON object")) { try LlamaConfig(contentsOf: path) }
    }

    // MARK: - Refused fields

    /// Each case changes the tiny Llama config; the error must be of the given kind and name the field.
    static let refusals: [(change: [String: JSONValue?], unsupported: Bool, names: String)] = [
        (["model_type": .string("gemma")], true, "model_type 'gemma'"),
        (["model_type": nil, "architectures": .array([.string("LlamaForSequenceClassification")])], true, "architectures"),
        (["model_type": nil], false, "model_type"),
        (["hidden_act": .string("gelu")], true, "hidden_act 'gelu'"),
        (["quantization_config": .object(["quant_method": .string("gptq")])], true, "quantization_config: quant_method"),
        (["quantization_config": .object(["quant_method": .string("bitsandbytes"), "load_in_8bit": .bool(true)])], true,
         "load_in_8bit"),
        (["quantization_config": .object(["load_in_4bit": .bool(true), "bnb_4bit_quant_type": .string("fp4")])], true,
         "bnb_4bit_quant_type \"fp4\""),
        (["rope_scaling": .object(["rope_type": .string("dynamic"), "factor": .number(2)])], true, "rope_type 'dynamic'"),
        (["rope_scaling": .object(["type": .string("longrope"), "factor": .number(2)])], true, "rope_type 'longrope'"),
        (["rope_parameters": .object(["rope_type": .string("proportional"), "rope_theta": .number(1e4)])], true,
         "rope_parameters.rope_type 'proportional'"),
        (["rope_scaling": .object(["rope_type": .string("linear")])], false, "rope_scaling.factor is missing"),
        (["rope_scaling": .object(["rope_type": .string("linear"), "factor": .null])], false, "rope_scaling.factor is null"),
        (["rope_scaling": .object(["rope_type": .string("llama3"), "factor": .number(8), "high_freq_factor": .number(4)])],
         false, "rope_scaling.low_freq_factor is missing"),
        (["rope_scaling": .object(["rope_type": .string("yarn")])], false, "rope_scaling.factor is missing"),
        (["rope_scaling": .object(["rope_type": .string("linear"), "factor": .number(0)])], false, "factor 0.0"),
        (["rope_scaling": .string("linear")], false, "rope_scaling is not an object"),
        (["rope_parameters": .object(["full_attention": .object(["rope_type": .string("default")])])], true,
         "rope_parameters.full_attention"),
        (["partial_rotary_factor": .number(0.5), "rope_scaling": .object(["rope_type": .string("linear"), "factor": .number(2)])],
         true, "partial_rotary_factor 0.5"),
        (["original_max_position_embeddings": .string("x"), "rope_scaling": .object([
            "rope_type": .string("yarn"), "factor": .number(2)])], false, "original_max_position_embeddings"),
        (["rope_theta": .number(-1)], false, "rope_theta"),
        (["head_dim": .integer(15)], false, "head_dim 15 is odd"),
        (["num_key_value_heads": .integer(3)], false, "num_key_value_heads 3"),
        (["hidden_size": .integer(66), "head_dim": .integer(16)], false, "hidden_size 66 is not a multiple of num_attention_heads"),
        (["model_type": .string("qwen3"), "head_dim": .null], false, "head_dim is null"),
        (["model_type": .string("mistral"), "layer_types": .array([.string("sliding_attention"), .string("full_attention")])],
         true, "layer_types with sliding_attention"),
        (["model_type": .string("qwen2"), "layer_types": .array([.string("sliding_attention"), .string("full_attention")])],
         true, "layer_types marks layer 0 sliding_attention"),
        (["model_type": .string("qwen2"), "layer_types": .array([.string("full_attention")])], false, "layer_types has 1 entries"),
        (["layer_types": .array([.string("chunked_attention"), .string("full_attention")])], true, "layer_types entry 'chunked_attention'"),
        (["model_type": .string("mistral"), "sliding_window": .integer(0)], false, "sliding_window 0"),
        (["vocab_size": .string("abc")], false, "vocab_size is not an integer"),
        (["tie_word_embeddings": .string("yes")], false, "tie_word_embeddings is not a boolean"),
        (["eos_token_id": .integer(999)], false, "token id 999"),
        (["bos_token_id": .array([.string("a")])], false, "bos_token_id"),
        (["rms_norm_eps": .integer(0)], false, "rms_norm_eps"),
        (["attention_dropout": .number(1.5)], false, "attention_dropout"),
        (["num_hidden_layers": .integer(0)], false, "num_hidden_layers = 0"),
    ]

    @Test(arguments: refusals.indices) func refusesByName(index: Int) throws {
        let (change, unsupported, names) = Self.refusals[index]
        let error = #expect(throws: FormatError.self) { try LlamaConfig(json: tinyLlama(change), path: "m/config.json") }
        let description = error.map { "\($0)" } ?? ""
        #expect(description.contains(names), "\(description) should name \(names)")
        #expect(description.hasPrefix("m/config.json"), "\(description) should name the file")
        if case .unsupported? = error { #expect(unsupported, "\(description)") } else { #expect(!unsupported, "\(description)") }
    }

    @Test func acceptsWhatTransformersIgnores() throws {
        // pretraining_tp is not read by transformers 5's Llama; Mistral has no biases whatever attention_bias says.
        let llama = try LlamaConfig(json: tinyLlama(["pretraining_tp": .integer(4)]), path: "config.json")
        #expect(llama == (try LlamaConfig(json: tinyLlama([:]), path: "config.json").with(rawJSON: llama.rawJSON)))
        let mistral = try LlamaConfig(json: tinyLlama(["model_type": .string("mistral"), "attention_bias": .bool(true),
                                                       "mlp_bias": .bool(true)]), path: "config.json")
        #expect(!mistral.qkvBias && !mistral.outputBias && !mistral.mlpBias)
        #expect(mistral.slidingWindows == [4096, 4096])
    }

    @Test func programmaticConfigsAreValidated() throws {
        let config = try LlamaConfig(family: .llama, vocabSize: 256, hiddenSize: 64, intermediateSize: 128, layers: 2,
                                     heads: 4, kvHeads: 2, maxPositions: 128)
        #expect(config.headDim == 16 && config.slidingWindows == [nil, nil] && config.ropeScaling == .none)
        #expect(throws: FormatError.self) {
            try LlamaConfig(family: .mistral, vocabSize: 256, hiddenSize: 64, intermediateSize: 128, layers: 2,
                            heads: 4, maxPositions: 128, attentionBias: true)
        }
        #expect(throws: FormatError.self) {
            try LlamaConfig(family: .qwen2, vocabSize: 256, hiddenSize: 64, intermediateSize: 128, layers: 2,
                            heads: 4, maxPositions: 128, slidingWindows: [8, 16])
        }
    }
}

/// The tiny Llama config (64 wide, 4 heads of 16, 2 layers, vocab 128) with keys replaced (nil removes a key).
func tinyLlama(_ change: [String: JSONValue?]) -> [String: JSONValue] {
    var config: [String: JSONValue] = [
        "model_type": .string("llama"), "hidden_size": .integer(64), "intermediate_size": .integer(96),
        "num_hidden_layers": .integer(2), "num_attention_heads": .integer(4), "num_key_value_heads": .integer(2),
        "vocab_size": .integer(128), "max_position_embeddings": .integer(4096),
    ]
    for (key, value) in change { config[key] = value }
    return config
}

extension LlamaConfig {
    func with(rawJSON: [String: JSONValue]?) -> LlamaConfig {
        var copy = self
        copy.rawJSON = rawJSON
        return copy
    }
}
