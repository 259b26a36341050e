// GPT-2's byte-level BPE tokenizer, from a model folder's vocab.json + merges.txt. Text is split into pieces by
// GPT-2's pattern ('s 't 're 've 'm 'll 'd, ` ?letters`, ` ?digits`, ` ?other`, whitespace), each piece's UTF-8
// bytes are mapped to printable characters (bytes_to_unicode), the merges are applied by rank, and the symbols
// are looked up in the vocabulary. Every byte has a symbol, so any UTF-8 text encodes and decodes back exactly.
// The same ids as HFTokenizer reading GPT-2's tokenizer.json (checked by the gpt2-bpe fixture).
import Foundation
import LoRAFormats

/// Encodes text to GPT-2 token ids and back.
public final class GPT2Tokenizer: Tokenizer, @unchecked Sendable {
    public let vocabulary: [String: Int]
    private let symbols: [Int: String]
    private let ranks: [Pair: Int]
    /// `<|endoftext|>`, when the vocabulary has it: text containing it is split there and it encodes as one id.
    public let endOfText: Int?
    /// From the folder's tokenizer_config.json when it names one, else `<|endoftext|>` (GPT-2's convention).
    public let bosTokenID: Int?
    public let eosTokenID: Int?
    private var cache: [String: [Int]] = [:]
    private let lock = NSLock()

    struct Pair: Hashable { let left: String, right: String }

    /// The printable character standing for each byte (GPT-2's bytes_to_unicode), and the reverse.
    static let byteSymbols: [Character] = {
        var symbols = [Character](repeating: " ", count: 256)
        var next = 256
        for b in 0..<256 {
            let printable = (33...126).contains(b) || (161...172).contains(b) || (174...255).contains(b)
            symbols[b] = Character(Unicode.Scalar(UInt32(printable ? b : next))!)
            if !printable { next += 1 }
        }
        return symbols
    }()
    static let symbolBytes: [Character: UInt8] = Dictionary(uniqueKeysWithValues: byteSymbols.enumerated().map { ($1, UInt8($0)) })

    /// Loads `folder/vocab.json` and `folder/merges.txt`, and BOS/EOS from `folder/tokenizer_config.json` if present.
    public convenience init(folder: String) throws {
        let configFile = folder + "/tokenizer_config.json"
        try self.init(vocabularyFile: folder + "/vocab.json", mergesFile: folder + "/merges.txt",
                      specialTokens: try SpecialTokenConfig.read(configFile), configFile: configFile)
    }

    /// Loads the two files; BOS and EOS are `<|endoftext|>` when the vocabulary has it.
    public convenience init(vocabularyFile: String, mergesFile: String) throws {
        try self.init(vocabularyFile: vocabularyFile, mergesFile: mergesFile, specialTokens: nil, configFile: "")
    }

    init(vocabularyFile: String, mergesFile: String, specialTokens: SpecialTokenConfig?, configFile: String) throws {
        guard let data = FileManager.default.contents(atPath: vocabularyFile) else {
            throw FormatError.io(path: vocabularyFile, reason: "cannot be read")
        }
        guard let object = (try? JSONValue.parse(data))?.objectValue else {
            throw FormatError.invalid(path: vocabularyFile, reason: "not a JSON object of token → id")
        }
        var vocabulary: [String: Int] = [:], symbols: [Int: String] = [:]
        for (token, value) in object {
            guard let id = value.intValue, id >= 0, id < 1 << 24 else {
                throw FormatError.invalid(path: vocabularyFile, reason: "token \(JSONValue.quote(token)) has id \(value.serialized()), not an integer in 0..<2^24")
            }
            guard symbols[id] == nil else { throw FormatError.invalid(path: vocabularyFile, reason: "id \(id) is given to two tokens") }
            (vocabulary[token], symbols[id]) = (id, token)
        }
        if let missing = Self.byteSymbols.first(where: { vocabulary[String($0)] == nil }) {
            throw FormatError.invalid(path: vocabularyFile, reason: "no token for the byte symbol \(JSONValue.quote(String(missing))): not a byte-level BPE vocabulary")
        }
        guard let text = FileManager.default.contents(atPath: mergesFile).flatMap({ String(data: $0, encoding: .utf8) }) else {
            throw FormatError.io(path: mergesFile, reason: "cannot be read as UTF-8")
        }
        var ranks: [Pair: Int] = [:]
        for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            if line.hasPrefix("#version") || line.isEmpty { continue }
            let parts = line.split(separator: " ", omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                throw FormatError.invalid(path: mergesFile, reason: "line \(number + 1) is not two symbols separated by a space")
            }
            let pair = Pair(left: String(parts[0]), right: String(parts[1]))
            if ranks[pair] == nil { ranks[pair] = ranks.count }
        }
        (self.vocabulary, self.symbols, self.ranks) = (vocabulary, symbols, ranks)
        endOfText = vocabulary["<|endoftext|>"]
        if let specialTokens {
            (bosTokenID, eosTokenID) = try specialTokens.ids(file: configFile) { vocabulary[$0] }
        } else {
            (bosTokenID, eosTokenID) = (endOfText, endOfText)
        }
    }

    public var vocabularySize: Int { vocabulary.count }
    public func id(of token: String) -> Int? { vocabulary[token] }
    public func token(of id: Int) -> String? { symbols[id] }

    /// GPT-2 has no post-processor: `addSpecialTokens` adds nothing, as in HF.
    public func encode(_ text: String, addSpecialTokens: Bool) throws -> [Int] { try encode(text) }

    /// The text of `ids`, without `<|endoftext|>` when `skipSpecialTokens`.
    public func decode(_ ids: [Int], skipSpecialTokens: Bool) throws -> String {
        try decode(skipSpecialTokens ? ids.filter { $0 != endOfText } : ids)
    }

    /// The token ids of `text`.
    public func encode(_ text: String) throws -> [Int] {
        guard let endOfText else { return try encodeOrdinary(text) }
        // Found by bytes, not by `components(separatedBy:)`, which compares Characters: "<|endoftext|>\u{301}"
        // ends in one Character ">\u{301}" there, yet HF and transformers split it off.
        let bytes = Array(text.utf8), marker = Array("<|endoftext|>".utf8)
        var ids: [Int] = []
        var start = 0, i = 0
        while i + marker.count <= bytes.count {
            if bytes[i] == marker[0] && bytes[i..<(i + marker.count)].elementsEqual(marker) {
                ids += try encodeOrdinary(String(decoding: bytes[start..<i], as: UTF8.self))
                ids.append(endOfText)
                i += marker.count
                start = i
            } else {
                i += 1
            }
        }
        return ids + (try encodeOrdinary(String(decoding: bytes[start...], as: UTF8.self)))
    }

    private func encodeOrdinary(_ text: String) throws -> [Int] {
        var ids: [Int] = []
        for piece in Self.pieces(of: text) { ids += try encodePiece(piece) }
        return ids
    }

    /// The text of `ids`. Bytes that do not form valid UTF-8 (a sequence cut inside a character) become U+FFFD.
    public func decode(_ ids: [Int]) throws -> String {
        var bytes: [UInt8] = []
        for id in ids {
            guard let symbol = symbols[id] else { throw TokenizerError.unknownID(id) }
            // A token holding a character that stands for no byte (an added token) is its own UTF-8, as in HF.
            let mapped = symbol.compactMap { Self.symbolBytes[$0] }
            bytes += mapped.count == symbol.count ? mapped : Array(symbol.utf8)
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// One piece: its bytes as symbols, merged pair by pair in rank order, looked up.
    private func encodePiece(_ piece: String) throws -> [Int] {
        if let cached = lock.withLock({ cache[piece] }) { return cached }
        var word = piece.utf8.map { String(Self.byteSymbols[Int($0)]) }
        while word.count > 1 {
            var best: (rank: Int, index: Int)?
            for i in 0..<(word.count - 1) {
                if let rank = ranks[Pair(left: word[i], right: word[i + 1])], rank < (best?.rank ?? .max) { best = (rank, i) }
            }
            guard let best else { break }
            let (left, right) = (word[best.index], word[best.index + 1])
            var merged: [String] = []
            var i = 0
            while i < word.count {
                if i + 1 < word.count && word[i] == left && word[i + 1] == right {
                    merged.append(left + right)
                    i += 2
                } else {
                    merged.append(word[i])
                    i += 1
                }
            }
            word = merged
        }
        let ids = try word.map { symbol in
            guard let id = vocabulary[symbol] else { throw TokenizerError.unrepresentable("the merges produce \(JSONValue.quote(symbol)), which the vocabulary lacks") }
            return id
        }
        lock.withLock { cache[piece] = ids }
        return ids
    }

    // MARK: - Pre-tokenization

    /// GPT-2's split: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ (first match wins).
    static func pieces(of text: String) -> [String] {
        let s = Array(text.unicodeScalars)
        let kinds = s.map(ScalarClass.init)
        var pieces: [String] = []
        var i = 0
        while i < s.count {
            let end = pieceEnd(s, kinds, from: i)
            pieces.append(String(scalars: s[i..<end]))
            i = end
        }
        return pieces
    }

    /// Where the piece starting at `i` ends; `kinds[j]` is `ScalarClass(s[j])`.
    static func pieceEnd(_ s: [Unicode.Scalar], _ kinds: [ScalarClass], from i: Int) -> Int {
        if s[i] == "'" && i + 1 < s.count {
            switch s[i + 1] {
            case "s", "t", "m", "d": return i + 2
            case "r", "v", "l":
                if i + 2 < s.count && s[i + 2] == (s[i + 1] == "l" ? "l" : "e") { return i + 3 }
            default: break
            }
        }
        // ` ?X+` for letters, numbers, and everything else that is not whitespace.
        let start = s[i] == " " && i + 1 < s.count && !kinds[i + 1].isSpace ? i + 1 : i
        let k = kinds[start]
        if !k.isSpace {
            var j = start + 1
            while j < s.count && kinds[j] == k { j += 1 }
            return j
        }
        // Whitespace: the whole run at the end of the text; otherwise all but its last character (which then
        // leads the next piece), or the single character when the run has one.
        var j = i
        while j < s.count && kinds[j].isSpace { j += 1 }
        if j == s.count { return j }
        return j - i >= 2 ? j - 1 : j
    }
}
