// tokenizer.json's `added_tokens` (special tokens such as `<|eot_id|>`, `<s>`, and user-added ones): found in the
// text before the model sees it, as HF's AddedVocabulary does. Tokens with `normalized: false` are matched in the
// raw text; the rest in each normalized stretch, by their normalized spelling. Matching is leftmost-longest on
// exact UTF-8 bytes (a byte trie, as HF's Aho-Corasick); then `single_word` drops a match touching a word
// character (the regex `\w`), `lstrip` / `rstrip` widen it over neighbouring whitespace.
import LoRAFormats

struct AddedToken {
    let content: String
    let id: Int
    let special: Bool
    let singleWord: Bool
    let lstrip: Bool
    let rstrip: Bool
    let normalized: Bool
}

/// A stretch of text between added tokens, or an added token with the bytes it was matched on (its
/// `lstrip`/`rstrip` whitespace included, as HF's offsets have it).
enum Segment {
    case text(Range<Int>)
    case token(Int, Range<Int>)
}

/// Leftmost-longest matching of a set of byte strings.
struct AddedTokenMatcher {
    private var children: [[UInt8: Int32]] = [[:]]
    /// For each trie node: the index (into `tokens`) of the token ending there, or -1.
    private var terminal: [Int32] = [-1]
    let tokens: [AddedToken]

    /// `patterns[i]` is what `tokens[i]` is matched as. Two tokens with one pattern cannot be told apart: refused.
    init(tokens: [AddedToken], patterns: [String], file: String) throws {
        self.tokens = tokens
        for (index, pattern) in patterns.enumerated() {
            var node = 0
            for byte in pattern.utf8 {
                if let child = children[node][byte] {
                    node = Int(child)
                } else {
                    children.append([:])
                    terminal.append(-1)
                    children[node][byte] = Int32(children.count - 1)
                    node = children.count - 1
                }
            }
            guard terminal[node] < 0 else {
                throw FormatError.invalid(path: file, reason: "added_tokens: \(JSONValue.quote(tokens[Int(terminal[node])].content)) and \(JSONValue.quote(tokens[index].content)) are both matched as \(JSONValue.quote(pattern))")
            }
            terminal[node] = Int32(index)
        }
    }

    /// HF's `AddedVocabulary::find_matches`: `text` cut into stretches and added tokens.
    func segments(_ text: [UInt8]) -> [Segment] {
        var out: [Segment] = []
        var startOffset = 0, i = 0
        while i < text.count {
            // The longest pattern starting at i.
            var node = 0, j = i, best: (end: Int, index: Int)? = nil
            while j < text.count, let child = children[node][text[j]] {
                node = Int(child)
                j += 1
                if terminal[node] >= 0 { best = (j, Int(terminal[node])) }
            }
            guard let best else { i += 1; continue }
            let token = tokens[best.index]
            var start = i, stop = best.end
            i = best.end
            if token.singleWord {
                let wordBefore = start > 0 && (Self.scalar(before: start, in: text)?.isWordCharacter ?? false)
                let wordAfter = stop < text.count && (Self.scalar(at: stop, in: text)?.isWordCharacter ?? false)
                if wordBefore || wordAfter { continue }
            }
            if token.lstrip {
                var s = start
                while s > 0, let scalar = Self.scalar(before: s, in: text), scalar.isWhiteSpace { s -= scalar.utf8Length }
                start = max(s, startOffset)
            }
            if token.rstrip {
                while stop < text.count, let scalar = Self.scalar(at: stop, in: text), scalar.isWhiteSpace { stop += scalar.utf8Length }
            }
            if startOffset < start { out.append(.text(startOffset..<start)) }
            out.append(.token(token.id, start..<stop))
            startOffset = stop
        }
        if startOffset < text.count { out.append(.text(startOffset..<text.count)) }
        return out
    }

    /// The scalar whose UTF-8 starts at byte `at` (`text` is valid UTF-8 and `at` a boundary).
    static func scalar(at: Int, in text: [UInt8]) -> Unicode.Scalar? {
        var decoder = UTF8()
        var iterator = text[at...].makeIterator()
        if case .scalarValue(let scalar) = decoder.decode(&iterator) { return scalar }
        return nil
    }

    /// The scalar ending just before byte `before`.
    static func scalar(before: Int, in text: [UInt8]) -> Unicode.Scalar? {
        var start = before - 1
        while start > 0 && text[start] & 0xC0 == 0x80 { start -= 1 }
        return scalar(at: start, in: text)
    }
}

extension Unicode.Scalar {
    var utf8Length: Int { value < 0x80 ? 1 : value < 0x800 ? 2 : value < 0x10000 ? 3 : 4 }
}
