// Hand-written matchers for the split regexes most tokenizer.json files use, because Swift Regex runs them at
// about 0.5 MB/s. Each gives exactly the regex's leftmost-first matches (checked against HF on the fixtures'
// pre-tokenizer words, and against Swift Regex on random text in the tests):
//   Llama 3 (maxDigits 3) and Qwen2 (maxDigits 1):
//     (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//   GPT-2's is GPT2Tokenizer.pieceEnd.
// `\s` is the White_Space property, `\p{L}` / `\p{N}` the general categories, all per Unicode scalar;
// `(?i)` folds as Oniguruma does: besides ASCII case, "ſ" (U+017F) matches s.

/// What the split regexes ask of a scalar.
enum ScalarClass: UInt8 {
    case letter, number, other
    /// White_Space other than \r and \n.
    case space
    /// \r or \n (also whitespace).
    case newline

    init(_ c: Unicode.Scalar) {
        if c.value < 0x80 {
            self = ScalarClass.ascii[Int(c.value)]
            return
        }
        if c.properties.isWhitespace { self = .space; return }
        switch c.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: self = .letter
        case .decimalNumber, .letterNumber, .otherNumber: self = .number
        default: self = .other
        }
    }

    static let ascii: [ScalarClass] = (0..<128).map { v in
        switch v {
        case 0x0A, 0x0D: .newline
        case 0x09, 0x0B, 0x0C, 0x20: .space
        case 0x30...0x39: .number
        case 0x41...0x5A, 0x61...0x7A: .letter
        default: .other
        }
    }

    var isSpace: Bool { self == .space || self == .newline }
}

enum SplitMatchers {
    /// The Llama 3 / Qwen2 regexes as tokenizer.json spells them, and their `\p{N}{1,k}` bound.
    static let llamaFamily: [String: Int] = [
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#: 3,
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#: 1,
    ]

    /// Where the Llama-family match starting at `i` ends (every position starts a match of at least one scalar).
    static func llamaPieceEnd(_ s: [Unicode.Scalar], _ kind: [ScalarClass], from i: Int, maxDigits: Int) -> Int {
        let n = s.count
        // (?i:'s|'t|'re|'ve|'m|'ll|'d)
        if s[i] == "'" && i + 1 < n {
            let a = folded(s[i + 1])
            if a == "s" || a == "t" || a == "m" || a == "d" { return i + 2 }
            if i + 2 < n {
                let b = folded(s[i + 2])
                if (a == "r" && b == "e") || (a == "v" && b == "e") || (a == "l" && b == "l") { return i + 3 }
            }
        }
        // [^\r\n\p{L}\p{N}]?\p{L}+
        var start = i
        if kind[i] != .letter && kind[i] != .number && kind[i] != .newline && i + 1 < n && kind[i + 1] == .letter { start = i + 1 }
        if kind[start] == .letter {
            var j = start + 1
            while j < n && kind[j] == .letter { j += 1 }
            return j
        }
        // \p{N}{1,k}
        if kind[i] == .number {
            var j = i + 1
            while j < n && j - i < maxDigits && kind[j] == .number { j += 1 }
            return j
        }
        //  ?[^\s\p{L}\p{N}]+[\r\n]*
        start = s[i] == " " && i + 1 < n && kind[i + 1] == .other ? i + 1 : i
        if kind[start] == .other {
            var j = start + 1
            while j < n && kind[j] == .other { j += 1 }
            while j < n && kind[j] == .newline { j += 1 }
            return j
        }
        // s[i] is whitespace. \s*[\r\n]+ : up to the last \r or \n of the run.
        var j = i, lastNewline = -1
        while j < n && kind[j].isSpace {
            if kind[j] == .newline { lastNewline = j }
            j += 1
        }
        if lastNewline >= 0 { return lastNewline + 1 }
        // \s+(?!\S) then \s+: the run, less its last scalar when something follows and that leaves one or more.
        if j == n { return j }
        return j - i >= 2 ? j - 1 : j
    }

    /// ASCII lowercase, and Oniguruma's fold of "ſ" to "s"; other scalars unchanged.
    private static func folded(_ c: Unicode.Scalar) -> Unicode.Scalar {
        if c.value >= 0x41 && c.value <= 0x5A { return Unicode.Scalar(UInt8(c.value) | 0x20) }
        return c == "\u{17F}" ? "s" : c
    }
}
