// The patterns tokenizer.json components search with (`{"String": ...}` literally or `{"Regex": ...}`), and
// HF's `find_matches` + `SplitDelimiterBehavior`, which turn matches into pieces. Everything works on Unicode
// scalars, never on `Character`s: HF (Rust `char`, Oniguruma) sees "\r\n" as two characters and "e\u{301}" as two,
// and compares strings scalar by scalar, while Swift's `Character` and `String ==` would merge them.
// Regexes run in Swift Regex with `.matchingSemantics(.unicodeScalar)` (so `\s`, `.`, `\p{..}` test one scalar,
// as Oniguruma does); GPT-2's pattern, the commonest, takes a hand-written matcher (GPT2Tokenizer.pieces).
import LoRAFormats

/// A literal string or a regex, found in text.
enum TextPattern: @unchecked Sendable {
    case literal([Unicode.Scalar])
    case regex(Regex<AnyRegexOutput>, source: String)
    /// GPT-2's split pattern, matched by hand (same matches, several times faster than the general engine).
    case gpt2
    /// The Llama 3 / Qwen2 split pattern, matched by hand (SplitMatchers.swift).
    case llama(maxDigits: Int)

    static let gpt2Source = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#

    /// Reads `{"String": s}` or `{"Regex": r}`.
    init(_ field: JSONField) throws {
        guard let pairs = field.node.pairs, pairs.count == 1 else {
            throw field.invalid("is \(field.node.kind), not {\"String\": ...} or {\"Regex\": ...}")
        }
        let inner = JSONField(node: pairs[0].value, file: field.file, at: "\(field.at).\(pairs[0].key)")
        switch pairs[0].key {
        case "String":
            let s = try inner.string()
            guard !s.isEmpty else { throw inner.unsupported("an empty pattern") }
            self = .literal(Array(s.unicodeScalars))
        case "Regex": self = try TextPattern(regex: inner.string(), field: inner)
        default: throw field.invalid("has \(JSONValue.quote(pairs[0].key)), not String or Regex")
        }
    }

    init(regex source: String, field: JSONField) throws {
        if source == Self.gpt2Source { self = .gpt2; return }
        if let maxDigits = SplitMatchers.llamaFamily[source] { self = .llama(maxDigits: maxDigits); return }
        do {
            self = .regex(try Regex(source).matchingSemantics(.unicodeScalar), source: source)
        } catch {
            throw field.unsupported("the regex \(JSONValue.quote(source)) does not compile in Swift Regex: \(error)")
        }
    }

    /// HF's `find_matches`: the text cut into consecutive ranges, each flagged whether it is a match.
    /// Empty text gives one empty unmatched range.
    func findMatches(in text: String) -> [(range: Range<String.Index>, isMatch: Bool)] {
        guard !text.isEmpty else { return [(text.startIndex..<text.startIndex, false)] }
        var out: [(range: Range<String.Index>, isMatch: Bool)] = []
        var previous = text.startIndex
        func add(_ match: Range<String.Index>) {
            if previous != match.lowerBound { out.append((previous..<match.lowerBound, false)) }
            out.append((match, true))
            previous = match.upperBound
        }
        switch self {
        case .literal(let needle):
            let scalars = text.unicodeScalars
            var i = scalars.startIndex
            while i != scalars.endIndex {
                var j = i, k = 0
                while k < needle.count, j != scalars.endIndex, scalars[j] == needle[k] { j = scalars.index(after: j); k += 1 }
                if k == needle.count {
                    add(i..<j)
                    i = j
                } else {
                    i = scalars.index(after: i)
                }
            }
        case .regex(let regex, _):
            for match in text.matches(of: regex) { add(match.range) }
        case .gpt2, .llama:
            let scalars = Array(text.unicodeScalars)
            let kinds = scalars.map(ScalarClass.init)
            var index = text.unicodeScalars.startIndex, i = 0
            while i < scalars.count {
                let end: Int
                if case .llama(let maxDigits) = self {
                    end = SplitMatchers.llamaPieceEnd(scalars, kinds, from: i, maxDigits: maxDigits)
                } else {
                    end = GPT2Tokenizer.pieceEnd(scalars, kinds, from: i)
                }
                let next = text.unicodeScalars.index(index, offsetBy: end - i)
                add(index..<next)
                (index, i) = (next, end)
            }
        }
        if previous != text.endIndex { out.append((previous..<text.endIndex, false)) }
        return out
    }
}

extension TextPattern {
    /// `text` with every match replaced by `content` (HF's `NormalizedString::replace` and the Replace decoder).
    func replaceMatches(in text: String, with content: String) -> String {
        // UTF-8 bytes, not String.UnicodeScalarView: appending a sequence to that view rebuilds it (quadratic).
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count + text.utf8.count / 2)
        if case .literal(let needle) = self, needle.count == 1 {  // the common " " → "▁" and back
            for scalar in text.unicodeScalars {
                if scalar == needle[0] { out += content.utf8 } else { out += UTF8.encode(scalar)! }
            }
        } else {
            for (range, isMatch) in findMatches(in: text) {
                if isMatch { out += content.utf8 } else { out += text.utf8[range] }
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// What `split` does with the matched delimiters (HF's `SplitDelimiterBehavior`).
enum SplitBehavior: String {
    case removed = "Removed", isolated = "Isolated", mergedWithPrevious = "MergedWithPrevious"
    case mergedWithNext = "MergedWithNext", contiguous = "Contiguous"

    /// HF's `NormalizedString::split` over `find_matches` output: the ranges to keep, in order (empty ones
    /// included; callers drop them as HF's `PreTokenizedString::split` does).
    func apply(_ matches: [(range: Range<String.Index>, isMatch: Bool)]) -> [Range<String.Index>] {
        var out: [(range: Range<String.Index>, remove: Bool)] = []
        switch self {
        case .isolated: out = matches.map { ($0.range, false) }
        case .removed: out = matches.map { ($0.range, $0.isMatch) }
        case .contiguous:
            var previousMatch = false
            for m in matches {
                if m.isMatch == previousMatch, let last = out.last {
                    out[out.count - 1].range = last.range.lowerBound..<m.range.upperBound
                } else {
                    out.append((m.range, false))
                }
                previousMatch = m.isMatch
            }
        case .mergedWithPrevious:
            var previousMatch = false
            for m in matches {
                if m.isMatch && !previousMatch, let last = out.last {
                    out[out.count - 1].range = last.range.lowerBound..<m.range.upperBound
                } else {
                    out.append((m.range, false))
                }
                previousMatch = m.isMatch
            }
        case .mergedWithNext:
            var previousMatch = false
            for m in matches.reversed() {
                if m.isMatch && !previousMatch, let last = out.last {
                    out[out.count - 1].range = m.range.lowerBound..<last.range.upperBound
                } else {
                    out.append((m.range, false))
                }
                previousMatch = m.isMatch
            }
            out.reverse()
        }
        return out.filter { !$0.remove }.map(\.range)
    }
}

extension Unicode.Scalar {
    /// Rust's `char::is_whitespace` and the regex `\s`: the White_Space property.
    var isWhiteSpace: Bool { properties.isWhitespace }
    /// Rust's `char::is_numeric` / `\p{N}`: Nd, Nl, No.
    var isNumeric: Bool {
        switch properties.generalCategory {
        case .decimalNumber, .letterNumber, .otherNumber: true
        default: false
        }
    }
    /// The Rust regex crate's Unicode `\w`: Alphabetic, marks, decimal digits, connector punctuation, join controls.
    var isWordCharacter: Bool {
        if properties.isAlphabetic || properties.isJoinControl { return true }
        switch properties.generalCategory {
        case .nonspacingMark, .spacingMark, .enclosingMark, .decimalNumber, .connectorPunctuation: return true
        default: return false
        }
    }
}

extension String {
    /// A string made of `scalars` exactly.
    init<S: Sequence<Unicode.Scalar>>(scalars: S) {
        var view = String.UnicodeScalarView()
        view.append(contentsOf: scalars)
        self = String(view)
    }
}
