// A Hugging Face `tokenizer.json` with a BPE model: byte-level (GPT-2, Llama 3, Qwen2) or SentencePiece-style
// with byte fallback (Llama 2, Mistral, TinyLlama). Encoding follows HF's TokenizerImpl step by step:
//   1. added tokens with `normalized: false` are cut out of the raw text;
//   2. each stretch between them is normalized, and added tokens with `normalized: true` are cut out of it;
//   3. the pre-tokenizer splits each remaining stretch into words; 4. the BPE model turns each word into ids;
//   5. with `addSpecialTokens`, the post-processor adds its tokens (BOS).
// Decoding maps ids to tokens (added tokens first), drops special ones if asked, and runs the decoder.
// Not supported, and refused by name: Unigram / WordPiece / WordLevel models, BPE dropout, and the components
// listed in Normalizer.swift, PreTokenizer.swift, TokenDecoder.swift and PostProcessor.swift. `truncation` and
// `padding` are ignored (they are batch settings that transformers sets per call). Known gaps: a normalizer that
// deletes text other than by Strip (Replace with "") does not move the offset Metaspace's `prepend_scheme: first`
// looks at; added tokens whose `lstrip`/`rstrip` whitespace contains another added token overlap in HF and not here.
import Foundation
import LoRAFormats

/// A tokenizer read from a Hugging Face `tokenizer.json`.
public final class HFTokenizer: Tokenizer, @unchecked Sendable {
    public let vocabularySize: Int
    public let bosTokenID: Int?
    public let eosTokenID: Int?
    let model: BPEModel
    let normalizer: Normalizer?
    let preTokenizer: PreTokenizer?
    let postProcessor: PostProcessor?
    let decoder: TokenDecoder?
    let addedByIDForOffsets: [Int: String]
    private let addedByID: [Int: (token: AddedToken, decoded: String)]
    private let addedByContent: [ExactString: Int]
    private let specialContents: Set<ExactString>
    let rawMatcher: AddedTokenMatcher?
    let normalizedMatcher: AddedTokenMatcher?

    /// Loads `folder/tokenizer.json`, and BOS/EOS from `folder/tokenizer_config.json` when it exists.
    public convenience init(folder: String) throws {
        try self.init(file: folder + "/tokenizer.json", configFile: folder + "/tokenizer_config.json")
    }

    /// Loads `file`; `configFile` (a tokenizer_config.json, used only if it exists) names BOS and EOS.
    public init(file: String, configFile: String? = nil) throws {
        guard let data = FileManager.default.contents(atPath: file) else { throw FormatError.io(path: file, reason: "cannot be read") }
        let root = JSONField(node: try JSONNode.parse(data, path: file), file: file, at: "")
        guard root.node.pairs != nil else { throw FormatError.invalid(path: file, reason: "not a JSON object") }
        if let version = root.optional("version"), try version.string() != "1.0" {
            throw version.unsupported("version \(JSONValue.quote(try version.string())) (only 1.0 is known)")
        }
        let modelField = try root.required("model")
        let type = try modelField.optional("type")?.string() ?? (modelField.optional("merges") != nil ? "BPE" : "")
        guard type == "BPE" else {
            throw modelField.unsupported("model type \(JSONValue.quote(type)) is not supported (only BPE; Unigram, WordPiece and WordLevel are not)")
        }
        model = try BPEModel(modelField)
        normalizer = try root.optional("normalizer").map(Normalizer.init)
        preTokenizer = try root.optional("pre_tokenizer").map(PreTokenizer.init)
        postProcessor = try root.optional("post_processor").map(PostProcessor.init)
        decoder = try root.optional("decoder").map(TokenDecoder.init)

        // Added tokens get their ids as HF gives them: the model's id when the content is a model token, else the
        // next one after the model's vocabulary, in file order. The file's own `id` must agree.
        var addedByID: [Int: (token: AddedToken, decoded: String)] = [:], addedByContent: [ExactString: Int] = [:]
        var specialContents = Set<ExactString>()
        var order: [Int] = []
        var nextID = model.vocabulary.count
        for item in try root.optional("added_tokens")?.array() ?? [] {
            let content = try item.required("content").string()
            if content.isEmpty { continue }
            let id: Int
            if let existing = addedByContent[ExactString(content)] ?? model.vocabulary[ExactString(content)] {
                id = existing
            } else {
                id = nextID
                nextID += 1
            }
            let declared = try item.required("id").int(in: 0...Int(Int32.max))
            guard declared == id else {
                throw item.invalid("\(JSONValue.quote(content)) has id \(declared), but its place in the vocabulary gives it \(id)")
            }
            if addedByContent[ExactString(content)] == nil, let other = model.tokens[id], !other.utf8.elementsEqual(content.utf8) {
                throw item.invalid("id \(id) of \(JSONValue.quote(content)) is the model token \(JSONValue.quote(other))")
            }
            let token = AddedToken(content: content, id: id, special: try item.optionalBool("special", default: false),
                                   singleWord: try item.optionalBool("single_word", default: false),
                                   lstrip: try item.optionalBool("lstrip", default: false),
                                   rstrip: try item.optionalBool("rstrip", default: false),
                                   normalized: try item.optionalBool("normalized", default: true))
            let decoded = token.normalized ? normalizer?.apply(content) ?? content : content
            if addedByID[id] == nil { order.append(id) }
            addedByID[id] = (token, decoded)
            addedByContent[ExactString(content)] = id
            if token.special { specialContents.insert(ExactString(content)) }
        }
        (self.addedByID, self.addedByContent, self.specialContents) = (addedByID, addedByContent, specialContents)
        addedByIDForOffsets = addedByID.mapValues(\.decoded)
        let tokens = order.map { addedByID[$0]! }
        let raw = tokens.filter { !$0.token.normalized }, normalized = tokens.filter(\.token.normalized)
        rawMatcher = raw.isEmpty ? nil : try AddedTokenMatcher(tokens: raw.map(\.token), patterns: raw.map(\.token.content), file: file)
        normalizedMatcher = normalized.isEmpty ? nil : try AddedTokenMatcher(tokens: normalized.map(\.token), patterns: normalized.map(\.decoded), file: file)
        let vocabulary = model.vocabulary
        vocabularySize = vocabulary.count + addedByContent.keys.filter { vocabulary[$0] == nil }.count

        for id in postProcessor?.addedIDs ?? [] where addedByID[id] == nil && model.tokens[id] == nil {
            throw FormatError.invalid(path: file, reason: "post_processor: adds id \(id), which is not in the vocabulary")
        }
        if let configFile, let config = try SpecialTokenConfig.read(configFile) {
            let lookup: (String) -> Int? = { addedByContent[ExactString($0)] ?? vocabulary[ExactString($0)] }
            (bosTokenID, eosTokenID) = try config.ids(file: configFile, lookup: lookup)
        } else {
            (bosTokenID, eosTokenID) = (nil, nil)
        }
    }

    public func id(of token: String) -> Int? {
        addedByContent[ExactString(token)] ?? model.vocabulary[ExactString(token)]
    }

    /// An added token's text (its normalized form for `normalized` ones, as HF), else the model's token.
    public func token(of id: Int) -> String? { addedByID[id]?.decoded ?? model.tokens[id] }

    /// Whether `id` is an added token marked special (what `skipSpecialTokens` leaves out).
    public func isSpecial(_ id: Int) -> Bool { token(of: id).map { specialContents.contains(ExactString($0)) } ?? false }

    public func encode(_ text: String, addSpecialTokens: Bool) throws -> [Int] {
        var ids: [Int] = []
        let bytes = Array(text.utf8)
        for segment in rawMatcher?.segments(bytes) ?? [.text(0..<bytes.count)] {
            switch segment {
            case .token(let id, _): ids.append(id)
            case .text(let range):
                guard !range.isEmpty else { continue }
                var atOrigin = range.lowerBound == 0
                var stretch = String(decoding: bytes[range], as: UTF8.self)
                if let normalizer { stretch = normalizer.apply(stretch, atOrigin: &atOrigin) }
                let normalizedBytes = Array(stretch.utf8)
                for inner in normalizedMatcher?.segments(normalizedBytes) ?? [.text(0..<normalizedBytes.count)] {
                    switch inner {
                    case .token(let id, _): ids.append(id)
                    case .text(let innerRange):
                        guard !innerRange.isEmpty else { continue }
                        let piece = Piece(text: String(decoding: normalizedBytes[innerRange], as: UTF8.self),
                                          atOrigin: atOrigin && innerRange.lowerBound == 0)
                        for word in preTokenizer?.apply([piece]) ?? [piece] {
                            ids += try model.tokenize(word.text).map(Int.init)
                        }
                    }
                }
            }
        }
        return postProcessor?.process(ids, addSpecialTokens: addSpecialTokens) ?? ids
    }

    public func decode(_ ids: [Int], skipSpecialTokens: Bool) throws -> String {
        var tokens: [String] = []
        tokens.reserveCapacity(ids.count)
        for id in ids {
            guard let token = token(of: id) else { throw TokenizerError.unknownID(id) }
            if skipSpecialTokens && specialContents.contains(ExactString(token)) { continue }
            tokens.append(token)
        }
        guard let decoder else { return tokens.joined(separator: " ") }
        return decoder.decodeChain(tokens).joined()
    }

    /// The words the pre-tokenizer makes of already-normalized text (no added tokens), for tests against HF's
    /// `pre_tokenize_str`.
    func preTokenize(_ text: String) -> [String] {
        guard !text.isEmpty else { return [] }
        let piece = Piece(text: text, atOrigin: true)
        return (preTokenizer?.apply([piece]) ?? [piece]).map(\.text)
    }
}
