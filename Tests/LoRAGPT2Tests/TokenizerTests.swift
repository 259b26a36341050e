// The byte-level BPE tokenizer against transformers' GPT2Tokenizer (tokenizer_cases.json from the fixture
// script), round trips on arbitrary UTF-8, and hostile vocabulary/merges files.
import Foundation
import LoRATestSupport
import SwiftLoRA
import Testing

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
        var generator = SeededGenerator(seed: 5)
        let alphabet = Array("aZ 09\n\t\r'-_.,!?é漢🦊\u{301}\u{200b}\u{a0}\u{3000}").map(String.init) + ["  ", "'s", "'ll"]
        for _ in 0..<300 {
            let text = (0..<Int.random(in: 0...40, using: &generator)).map { _ in alphabet.randomElement(using: &generator)! }.joined()
            #expect(try tokenizer.decode(tokenizer.encode(text)) == text, "\(JSONValue.quote(text))")
        }
        #expect(try tokenizer.encode("a<|endoftext|>b").contains(tokenizer.endOfText!))
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
        #expect(throws: (any Error).self) { try tokenizer.decode([100_000]) }
    }
}
