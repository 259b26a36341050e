// What every tokenizer offers (text ⇄ ids, token lookups, BOS/EOS), and how a model folder's tokenizer is found:
// `tokenizer.json` (Hugging Face tokenizers) when present, else GPT-2's `vocab.json` + `merges.txt`.
// BOS/EOS come from `tokenizer_config.json`'s `bos_token` / `eos_token` (a string or `{"content": ...}`).
import Foundation
import LoRAFormats

/// Text to token ids and back, with Hugging Face `tokenizers` semantics.
public protocol Tokenizer: AnyObject, Sendable {
    /// The ids of `text`. `addSpecialTokens: false` is HF's `add_special_tokens=False`: nothing is added (no BOS),
    /// but added/special tokens written in the text are still matched. `true` applies the post-processor
    /// (e.g. Llama's BOS template).
    func encode(_ text: String, addSpecialTokens: Bool) throws -> [Int]
    /// The text of `ids` (HF's `decode`); special tokens are left out when `skipSpecialTokens`.
    /// Throws `TokenizerError.unknownID` for an id the tokenizer does not have.
    func decode(_ ids: [Int], skipSpecialTokens: Bool) throws -> String
    /// The id of a token given in the vocabulary's own spelling (byte-level tokens spell a space "Ġ").
    func id(of token: String) -> Int?
    /// The token of an id, in the vocabulary's spelling; nil when the id is unknown.
    func token(of id: Int) -> String?
    /// How many tokens there are, added tokens included (HF's `len(tokenizer)`).
    var vocabularySize: Int { get }
    /// The beginning-of-sequence token, from tokenizer_config.json (nil when it names none).
    var bosTokenID: Int? { get }
    /// The end-of-sequence token, from tokenizer_config.json (GPT-2 folders without one: `<|endoftext|>`).
    var eosTokenID: Int? { get }
}

extension Tokenizer {
    /// The ids of `text` with nothing added (HF's `add_special_tokens=False`).
    public func encode(_ text: String) throws -> [Int] { try encode(text, addSpecialTokens: false) }
    /// The text of `ids`, special tokens kept.
    public func decode(_ ids: [Int]) throws -> String { try decode(ids, skipSpecialTokens: false) }
}

/// A failure while encoding or decoding (file problems are `FormatError`s, thrown while loading).
public enum TokenizerError: Error, CustomStringConvertible, Equatable {
    /// A token id that is not in the vocabulary.
    case unknownID(Int)
    /// Text the model cannot represent: a character with no token, no byte fallback, and no usable `unk_token`.
    case unrepresentable(String)

    public var description: String {
        switch self {
        case .unknownID(let id): "token id \(id) is not in the vocabulary"
        case .unrepresentable(let reason): "cannot tokenize: \(reason)"
        }
    }
}

/// Loads the tokenizer of a model folder: `tokenizer.json` when present, else `vocab.json` + `merges.txt`.
public func loadTokenizer(folder: String) throws -> any Tokenizer {
    let manager = FileManager.default
    if manager.fileExists(atPath: folder + "/tokenizer.json") { return try HFTokenizer(folder: folder) }
    if manager.fileExists(atPath: folder + "/vocab.json") && manager.fileExists(atPath: folder + "/merges.txt") {
        return try GPT2Tokenizer(folder: folder)
    }
    guard manager.fileExists(atPath: folder) else { throw FormatError.io(path: folder, reason: "no such folder") }
    throw FormatError.invalid(path: folder, reason: "no tokenizer: neither tokenizer.json nor vocab.json + merges.txt is there")
}

/// `bos_token` / `eos_token` of a tokenizer_config.json, as token strings.
struct SpecialTokenConfig {
    var bos: String?
    var eos: String?

    /// Reads `file` when it exists; both nil when it does not.
    static func read(_ file: String) throws -> SpecialTokenConfig? {
        guard FileManager.default.fileExists(atPath: file) else { return nil }
        guard let data = FileManager.default.contents(atPath: file) else { throw FormatError.io(path: file, reason: "cannot be read") }
        let root = try JSONNode.parse(data, path: file)
        guard root.pairs != nil else { throw FormatError.invalid(path: file, reason: "not a JSON object") }
        func token(_ field: String) throws -> String? {
            guard let value = root[field], !value.isNull else { return nil }
            if let s = value.string { return s }
            if let content = value["content"]?.string { return content }
            throw FormatError.invalid(path: file, reason: "\(field) is \(value.kind), not a string or {\"content\": string}")
        }
        return SpecialTokenConfig(bos: try token("bos_token"), eos: try token("eos_token"))
    }

    /// The id of each named token; a name the tokenizer lacks is an error naming the field.
    func ids(file: String, lookup: (String) -> Int?) throws -> (bos: Int?, eos: Int?) {
        func id(_ token: String?, _ field: String) throws -> Int? {
            guard let token else { return nil }
            guard let id = lookup(token) else {
                throw FormatError.invalid(path: file, reason: "\(field) \(JSONValue.quote(token)) is not a token of the tokenizer")
            }
            return id
        }
        return (try id(bos, "bos_token"), try id(eos, "eos_token"))
    }
}
