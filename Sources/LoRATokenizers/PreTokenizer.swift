// tokenizer.json's `pre_tokenizer`: cuts each normalized stretch of text into the words the model merges within.
// ByteLevel (optional prefix space, GPT-2's split, bytes → printable symbols), Split (a pattern with a delimiter
// behaviour, optionally inverted), Metaspace (spaces → "▁", prepend scheme, split before each "▁"), Digits,
// Whitespace, WhitespaceSplit and Sequence; others (Bert, Punctuation, UnicodeScripts, ...) are refused by name.
import LoRAFormats

/// A stretch of text on its way to the model. `atOrigin`: it starts at offset 0 of the input (HF's
/// `offsets_original().0 == 0`), which Metaspace's `prepend_scheme: first` checks.
struct Piece {
    var text: String
    var atOrigin: Bool
}

enum PrependScheme: String { case always, first, never }

indirect enum PreTokenizer {
    case byteLevel(addPrefixSpace: Bool, useRegex: Bool)
    case split(TextPattern, SplitBehavior, invert: Bool)
    case metaspace(replacement: Unicode.Scalar, prepend: PrependScheme, split: Bool)
    case digits(individual: Bool)
    case whitespace, whitespaceSplit
    case sequence([PreTokenizer])

    init(_ field: JSONField) throws {
        switch try field.type() {
        case "ByteLevel":
            self = .byteLevel(addPrefixSpace: try field.optionalBool("add_prefix_space", default: true),
                              useRegex: try field.optionalBool("use_regex", default: true))
        case "Split":
            let behaviorField = try field.required("behavior")
            guard let behavior = SplitBehavior(rawValue: try behaviorField.string()) else {
                throw behaviorField.invalid("is not Removed, Isolated, MergedWithPrevious, MergedWithNext or Contiguous")
            }
            self = .split(try TextPattern(field.required("pattern")), behavior, invert: try field.required("invert").bool())
        case "Metaspace":
            let (replacement, prepend) = try Self.metaspaceSettings(field)
            self = .metaspace(replacement: replacement, prepend: prepend, split: try field.optionalBool("split", default: true))
        case "Digits": self = .digits(individual: try field.optionalBool("individual_digits", default: false))
        case "Whitespace": self = .whitespace
        case "WhitespaceSplit": self = .whitespaceSplit
        case "Sequence": self = .sequence(try field.required("pretokenizers").array().map(PreTokenizer.init))
        case let other: throw field.unsupported("pre_tokenizer type \(JSONValue.quote(other)) is not supported")
        }
    }

    /// Metaspace's `replacement` and prepend scheme (older files say `add_prefix_space` instead of `prepend_scheme`).
    static func metaspaceSettings(_ field: JSONField) throws -> (Unicode.Scalar, PrependScheme) {
        let replacement = try field.required("replacement").scalar()
        var prepend = PrependScheme.always
        if let scheme = field.optional("prepend_scheme") {
            guard let value = PrependScheme(rawValue: try scheme.string()) else { throw scheme.invalid("is not always, first or never") }
            prepend = value
        }
        if let add = field.optional("add_prefix_space"), try add.bool() == false {
            if field.optional("prepend_scheme") != nil && prepend != .never {
                throw add.invalid("is false but prepend_scheme is \(prepend.rawValue)")
            }
            prepend = .never
        }
        return (replacement, prepend)
    }

    func apply(_ pieces: [Piece]) -> [Piece] {
        switch self {
        case .sequence(let steps): return steps.reduce(pieces) { $1.apply($0) }
        case .byteLevel(let addPrefixSpace, let useRegex):
            return pieces.flatMap { piece -> [Piece] in
                var piece = piece
                if addPrefixSpace && piece.text.unicodeScalars.first != " " { piece.text = " " + piece.text }
                let words = useRegex ? split(piece, TextPattern.gpt2, .isolated) : [piece]
                return words.map { Piece(text: byteLevelSymbols($0.text), atOrigin: $0.atOrigin) }
            }
        case .split(let pattern, let behavior, let invert):
            return pieces.flatMap { split($0, pattern, behavior, invert: invert) }
        case .metaspace(let replacement, let prepend, let splitting):
            return pieces.flatMap { piece -> [Piece] in
                var scalars = String.UnicodeScalarView()
                for scalar in piece.text.unicodeScalars { scalars.append(scalar == " " ? replacement : scalar) }
                let startsWithReplacement = scalars.first == replacement
                if !startsWithReplacement && (prepend == .always || (prepend == .first && piece.atOrigin)) {
                    scalars.insert(replacement, at: scalars.startIndex)
                }
                let replaced = Piece(text: String(scalars), atOrigin: piece.atOrigin)
                return splitting ? split(replaced, .literal([replacement]), .mergedWithNext) : [replaced]
            }
        case .digits(let individual):
            return pieces.flatMap { split($0, matches: $0.text.scalarRuns(\.isNumeric), individual ? .isolated : .contiguous) }
        case .whitespace:
            return pieces.flatMap { piece in piece.text.whitespaceWords().map { piece.slice($0) } }
        case .whitespaceSplit:
            return pieces.flatMap { split($0, matches: $0.text.scalarRuns(\.isWhiteSpace), .removed) }
        }
    }

    /// HF's `PreTokenizedString::split` of one piece by a pattern: the kept ranges, empty ones dropped.
    private func split(_ piece: Piece, _ pattern: TextPattern, _ behavior: SplitBehavior, invert: Bool = false) -> [Piece] {
        let matches = pattern.findMatches(in: piece.text).map { ($0.range, $0.isMatch != invert) }
        return split(piece, matches: matches, behavior)
    }

    private func split(_ piece: Piece, matches: [(range: Range<String.Index>, isMatch: Bool)], _ behavior: SplitBehavior) -> [Piece] {
        behavior.apply(matches).compactMap { $0.isEmpty ? nil : piece.slice($0) }
    }
}

extension Piece {
    /// The part of the piece in `range` (a range of `text`).
    func slice(_ range: Range<String.Index>) -> Piece {
        Piece(text: String(text.unicodeScalars[range]), atOrigin: atOrigin && range.lowerBound == text.startIndex)
    }
}

extension String {
    /// HF's `find_matches` for a character predicate: each scalar the predicate accepts is a match of its own
    /// (Contiguous merges neighbours later); the stretches between are unmatched.
    func scalarRuns(_ isMatch: (Unicode.Scalar) -> Bool) -> [(range: Range<String.Index>, isMatch: Bool)] {
        guard !isEmpty else { return [(startIndex..<startIndex, false)] }
        var out: [(range: Range<String.Index>, isMatch: Bool)] = []
        var last = startIndex
        var i = unicodeScalars.startIndex
        while i != unicodeScalars.endIndex {
            let next = unicodeScalars.index(after: i)
            if isMatch(unicodeScalars[i]) {
                if last < i { out.append((last..<i, false)) }
                out.append((i..<next, true))
                last = next
            }
            i = next
        }
        if last < endIndex { out.append((last..<endIndex, false)) }
        return out
    }

    /// The Whitespace pre-tokenizer's words: maximal runs of `\w` scalars and of scalars that are neither `\w`
    /// nor `\s` (HF: the matches of `\w+|[^\w\s]+`); whitespace is dropped.
    func whitespaceWords() -> [Range<String.Index>] {
        var out: [Range<String.Index>] = []
        var i = unicodeScalars.startIndex
        while i != unicodeScalars.endIndex {
            let scalar = unicodeScalars[i]
            if scalar.isWhiteSpace { i = unicodeScalars.index(after: i); continue }
            let word = scalar.isWordCharacter
            var j = unicodeScalars.index(after: i)
            while j != unicodeScalars.endIndex, !unicodeScalars[j].isWhiteSpace, unicodeScalars[j].isWordCharacter == word {
                j = unicodeScalars.index(after: j)
            }
            out.append(i..<j)
            i = j
        }
        return out
    }
}
