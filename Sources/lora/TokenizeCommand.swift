// `lora tokenize`: the token ids of a text file's exact bytes with a model folder's tokenizer (tokenizer.json, or
// GPT-2's vocab.json + merges.txt), no special tokens added (HF's add_special_tokens=False), and their decoding.
import ArgumentParser
import Foundation
import SwiftLoRA

struct TokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize", abstract: "Token ids of a UTF-8 file with a model folder's tokenizer, and their decoded text.")

    @Option(help: "A model folder with tokenizer.json (or vocab.json + merges.txt).") var model: String
    @Option(help: "The UTF-8 text file; every byte is encoded, a final newline included.") var file: String
    @Flag(help: "Add the tokenizer's special tokens (BOS and the like, as HF's add_special_tokens=True).") var addSpecialTokens = false
    @Flag(help: "Print one JSON object {\"ids\": [...], \"text\": ...}.") var json = false

    func run() throws {
        let tokenizer = try loadTokenizer(folder: model)
        guard let bytes = FileManager.default.contents(atPath: file) else { throw ValidationError("\(file): cannot be read") }
        guard let text = String(data: bytes, encoding: .utf8) else { throw ValidationError("\(file): not UTF-8 text") }
        let ids = try tokenizer.encode(text, addSpecialTokens: addSpecialTokens)
        let decoded = try tokenizer.decode(ids)
        if json {
            print(#"{"ids": [\#(ids.map(String.init).joined(separator: ", "))], "text": \#(JSONValue.quote(decoded))}"#)
        } else {
            print("\(ids.count) tokens: \(ids.map(String.init).joined(separator: " "))")
            print(decoded)
        }
    }
}
