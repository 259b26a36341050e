// The byte-level BPE tokenizer against transformers' GPT2Tokenizer (tokenizer_cases.json from the fixture
// script), round trips on arbitrary UTF-8, and hostile vocabulary/merges files.
import Foundation
import LoRAFormats
import LoRATokenizers
import Testing

/// Tests/Fixtures.
let fixturesRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures").path
/// The GPT-2 fixture folder (vocab.json + merges.txt).
let fixtures = fixturesRoot + "/gpt2-tiny"

/// SplitMix64: reproducible random texts without the runtime module.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite("GPT-2 tokenizer")
struct TokenizerTests {
    let tokenizer: GPT2Tokenizer

    init() throws { tokenizer = try GPT2Tokenizer(folder: fixtures) }

    @Test("ids match transformers' GPT2Tokenizer on every fixture case, and decode back to the text")
    func referenceIds() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: fixtures + "/tokenizer_cases.json"))
        let cases = try JSONValue.parse(data).arrayValue ?? []
        #expect(cases.count > 20)
        for item in cases {
            let text = item.objectValue?["text"]?.stringValue ?? "", ids = item.objectValue?["ids"]?.arrayValue?.compactMap(\.intValue) ?? []
            #expect(try tokenizer.encode(text) == ids, "\(JSONValue.quote(text))")
            #expect(try tokenizer.decode(ids) == text)
        }
    }

    @Test("any UTF-8 text round-trips exactly")
    func roundTrip() throws {
        var generator = SplitMix(seed: 5)
        let alphabet = Array("aZ 09\n\t\r'-_.,!?é漢🦊\u{301}\u{200b}\u{a0}\u{3000}").map(String.init) + ["  ", "'s", "'ll"]
        for _ in 0..<300 {
            let text = (0..<Int.random(in: 0...40, using: &generator)).map { _ in alphabet.randomElement(using: &generator)! }.joined()
            #expect(try tokenizer.decode(tokenizer.encode(text)) == text, "\(JSONValue.quote(text))")
        }
        #expect(try tokenizer.encode("a<|endoftext|>b").contains(tokenizer.endOfText!))
    }

    @Test("the Tokenizer protocol: BOS/EOS are <|endoftext|>, lookups, skipping it when decoding, loadTokenizer")
    func protocolConformance() throws {
        let loaded = try loadTokenizer(folder: fixtures)
        #expect(loaded is GPT2Tokenizer)
        let end = try #require(tokenizer.endOfText)
        #expect(loaded.eosTokenID == end && loaded.bosTokenID == end)
        #expect(loaded.vocabularySize == tokenizer.vocabulary.count)
        #expect(loaded.id(of: "<|endoftext|>") == end && loaded.token(of: end) == "<|endoftext|>")
        let ids = try loaded.encode("hi<|endoftext|>there", addSpecialTokens: true)
        #expect(try loaded.decode(ids, skipSpecialTokens: true) == "hithere")
        #expect(try loaded.decode(ids) == "hi<|endoftext|>there")
    }

    @Test("bad vocabulary and merges files are clear errors")
    func hostileFiles() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("lora-tok-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let vocab = directory.appendingPathComponent("vocab.json").path, merges = directory.appendingPathComponent("merges.txt").path
        try FileManager.default.copyItem(atPath: fixtures + "/merges.txt", toPath: merges)
        for bad in ["[1, 2]", "{\"a\": 1}", "{\"a\": -1}", "{\"a\": 1, \"b\": 1}", "not json"] {
            try bad.write(toFile: vocab, atomically: true, encoding: .utf8)
            #expect(throws: FormatError.self) { try GPT2Tokenizer(vocabularyFile: vocab, mergesFile: merges) }
        }
        try FileManager.default.removeItem(atPath: vocab)
        try FileManager.default.copyItem(atPath: fixtures + "/vocab.json", toPath: vocab)
        try "#version: 0.2\na b c\n".write(toFile: merges, atomically: true, encoding: .utf8)
        let error = #expect(throws: FormatError.self) { try GPT2Tokenizer(vocabularyFile: vocab, mergesFile: merges) }
        #expect(error?.description.contains("line 2") == true)
        #expect(throws: TokenizerError.unknownID(100_000)) { try tokenizer.decode([100_000]) }
    }
}
