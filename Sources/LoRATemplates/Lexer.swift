// Jinja's lexer, configured as transformers configures it for chat templates: trim_blocks and lstrip_blocks on,
// keep_trailing_newline off, `{{ }}` / `{% %}` / `{# #}` delimiters, `-` and `+` whitespace control.
// It reproduces jinja2/lexer.py rule for rule (3.1.6), because whitespace is where chat templates differ:
// - `\r\n` and `\r` become `\n`, and one trailing newline of the template is dropped;
// - `{%-`/`{{-`/`{#-` strip all whitespace before the tag; `-%}`/`-}}`/`-#}` strip all whitespace after it;
// - trim_blocks: a `%}` or `#}` eats one directly following `\n` (not `}}`, not `+%}`);
// - lstrip_blocks: spaces and tabs between a line start and a `{%` or `{#` are dropped (not before `{{`, not `{%+`);
// - `{% raw %}...{% endraw %}` is text; a tag ends only where brackets inside it balance (`{{ {'a': 1} }}`).
// Text is held as Unicode scalars, as Python strings are.

struct Token: Sendable {
    enum Kind: Sendable, Equatable {
        case text, variableBegin, variableEnd, blockBegin, blockEnd, name, string, integer, float, op, end
    }
    var kind: Kind
    /// The text (for `.string`, the unescaped value; for `.op`, the operator).
    var value: String
    var position: SourcePosition
}

struct Lexer {
    private let source: [Unicode.Scalar]
    private var lineStarts: [Int] = [0]
    private var tokens: [Token] = []
    private var pos = 0
    private var lineStarting = true
    private let maxTemplateScalars: Int

    /// The template's tokens, ending with `.end`.
    static func tokenize(_ text: String, maxTemplateScalars: Int) throws(TemplateError) -> [Token] {
        var lexer = Lexer(text, maxTemplateScalars: maxTemplateScalars)
        try lexer.run()
        return lexer.tokens
    }

    private init(_ text: String, maxTemplateScalars: Int) {
        var scalars: [Unicode.Scalar] = []
        scalars.reserveCapacity(text.unicodeScalars.count)
        var previousCR = false
        for s in text.unicodeScalars {
            if s == "\r" { scalars.append("\n"); previousCR = true; continue }
            if s == "\n" && previousCR { previousCR = false; continue }
            previousCR = false
            scalars.append(s)
        }
        if scalars.last == "\n" { scalars.removeLast() }
        source = scalars
        self.maxTemplateScalars = maxTemplateScalars
        for (i, s) in scalars.enumerated() where s == "\n" { lineStarts.append(i + 1) }
    }

    private func position(_ offset: Int) -> SourcePosition {
        var lo = 0, hi = lineStarts.count - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if lineStarts[mid] <= offset { lo = mid } else { hi = mid - 1 }
        }
        return SourcePosition(line: lo + 1, column: offset - lineStarts[lo] + 1)
    }

    private func error(_ message: String, at offset: Int) -> TemplateError {
        TemplateError(.syntax, message).located(position(offset))
    }

    private func at(_ offset: Int, _ literal: String) -> Bool {
        var i = offset
        for s in literal.unicodeScalars {
            guard i < source.count, source[i] == s else { return false }
            i += 1
        }
        return true
    }

    private mutating func emit(_ kind: Token.Kind, _ value: String, at offset: Int) {
        tokens.append(Token(kind: kind, value: value, position: position(offset)))
    }

    private func string(_ range: Range<Int>) -> String {
        var s = String.UnicodeScalarView()
        s.append(contentsOf: source[range])
        return String(s)
    }

    private mutating func run() throws(TemplateError) {
        guard source.count <= maxTemplateScalars else {
            throw TemplateError(.limit, "template is \(source.count) characters long, over the limit of \(maxTemplateScalars)")
        }
        while pos < source.count {
            guard let (start, kind) = nextTagStart(from: pos) else {
                emit(.text, string(pos..<source.count), at: pos)
                break
            }
            var afterDelimiter = start + 2
            var sign: Unicode.Scalar? = nil
            if afterDelimiter < source.count, source[afterDelimiter] == "-" || source[afterDelimiter] == "+" {
                sign = source[afterDelimiter]
                afterDelimiter += 1
            }
            let rawEnd = kind == "%" ? rawBlockEnd(after: afterDelimiter) : nil
            emitText(pos..<start, sign: sign, lstripAllowed: kind != "{")
            switch kind {
            case "#": try comment(from: afterDelimiter, tagStart: start)
            case "{": try tag(from: afterDelimiter, tagStart: start, block: false)
            default:
                if let rawEnd { try raw(from: rawEnd, tagStart: start) } else {
                    try tag(from: afterDelimiter, tagStart: start, block: true)
                }
            }
        }
        emit(.end, "", at: source.count)
    }

    /// The first `{{`, `{%` or `{#` at or after `offset`, with its second character.
    private func nextTagStart(from offset: Int) -> (Int, Unicode.Scalar)? {
        var i = offset
        while i + 1 < source.count {
            if source[i] == "{", source[i + 1] == "{" || source[i + 1] == "%" || source[i + 1] == "#" {
                return (i, source[i + 1])
            }
            i += 1
        }
        return nil
    }

    /// Text before a tag, after the tag's whitespace control (Jinja's OptionalLStrip).
    private mutating func emitText(_ range: Range<Int>, sign: Unicode.Scalar?, lstripAllowed: Bool) {
        var end = range.upperBound
        if sign == "-" {
            while end > range.lowerBound, isPythonWhitespace(source[end - 1]) { end -= 1 }
        } else if sign != "+" && lstripAllowed {
            var lineStart = end
            while lineStart > range.lowerBound, source[lineStart - 1] != "\n" { lineStart -= 1 }
            let afterNewline = lineStart > range.lowerBound
            if (afterNewline || lineStarting) && lineStart < end
                && source[lineStart..<end].allSatisfy(isPythonWhitespace) {
                end = lineStart
            }
        }
        if end > range.lowerBound { emit(.text, string(range.lowerBound..<end), at: range.lowerBound) }
    }

    /// Where the tag end after `-` / `+` starts: `+%}` keeps what follows, `-%}` strips all whitespace,
    /// `%}` eats one newline (trim_blocks). Returns the offset after the end and whether it ended a line.
    private func blockEnd(at i: Int, close: String, trimNewline: Bool) -> Int? {
        if at(i, "+" + close) { return i + 1 + close.unicodeScalars.count }
        if at(i, "-" + close) {
            var j = i + 1 + close.unicodeScalars.count
            while j < source.count, isPythonWhitespace(source[j]) { j += 1 }
            return j
        }
        if at(i, close) {
            var j = i + close.unicodeScalars.count
            if trimNewline, j < source.count, source[j] == "\n" { j += 1 }
            return j
        }
        return nil
    }

    private mutating func comment(from offset: Int, tagStart: Int) throws(TemplateError) {
        var i = offset
        while i < source.count {
            if let end = blockEnd(at: i, close: "#}", trimNewline: true) {
                lineStarting = source[end - 1] == "\n"
                pos = end
                return
            }
            i += 1
        }
        throw error("missing end of comment tag '#}'", at: tagStart)
    }

    /// If `{%` (sign already skipped) opens `raw`: the offset after its `%}`.
    private func rawBlockEnd(after offset: Int) -> Int? {
        var i = offset
        while i < source.count, isPythonWhitespace(source[i]) { i += 1 }
        guard at(i, "raw") else { return nil }
        i += 3
        while i < source.count, isPythonWhitespace(source[i]) { i += 1 }
        if at(i, "-%}") {
            i += 3
            while i < source.count, isPythonWhitespace(source[i]) { i += 1 }
            return i
        }
        return at(i, "%}") ? i + 2 : nil
    }

    private mutating func raw(from offset: Int, tagStart: Int) throws(TemplateError) {
        var i = offset
        while let (start, kind) = nextTagStart(from: i) {
            i = start + 1
            guard kind == "%" else { continue }
            var j = start + 2
            var sign: Unicode.Scalar? = nil
            if j < source.count, source[j] == "-" || source[j] == "+" { sign = source[j]; j += 1 }
            while j < source.count, isPythonWhitespace(source[j]) { j += 1 }
            guard at(j, "endraw") else { continue }
            j += 6
            while j < source.count, isPythonWhitespace(source[j]) { j += 1 }
            guard let end = blockEnd(at: j, close: "%}", trimNewline: true) else { continue }
            lineStarting = false
            emitText(offset..<start, sign: sign, lstripAllowed: true)
            lineStarting = source[end - 1] == "\n"
            pos = end
            return
        }
        throw error("missing end of raw directive '{% endraw %}'", at: tagStart)
    }

    private mutating func tag(from offset: Int, tagStart: Int, block: Bool) throws(TemplateError) {
        emit(block ? .blockBegin : .variableBegin, "", at: tagStart)
        let close = block ? "%}" : "}}"
        var i = offset
        var brackets: [Unicode.Scalar] = []
        while true {
            guard i < source.count else {
                throw error("unexpected end of template: '\(block ? "{%" : "{{")' is never closed by '\(close)'",
                            at: tagStart)
            }
            if brackets.isEmpty {
                let end = block ? blockEnd(at: i, close: close, trimNewline: true)
                    : (at(i, "-}}") ? Optional(skipWhitespace(from: i + 3)) : (at(i, "}}") ? i + 2 : nil))
                if let end {
                    emit(block ? .blockEnd : .variableEnd, "", at: i)
                    lineStarting = source[end - 1] == "\n"
                    pos = end
                    return
                }
            }
            let c = source[i]
            if isPythonWhitespace(c) { i += 1; continue }
            if let end = scanNumber(at: i) {
                emit(end.isFloat ? .float : .integer, string(i..<end.offset).replacingOccurrences(of: "_", with: ""),
                     at: i)
                i = end.offset
            } else if isNameStart(c) {
                var j = i + 1
                while j < source.count, isNameContinue(source[j]) { j += 1 }
                emit(.name, string(i..<j), at: i)
                i = j
            } else if c == "'" || c == "\"" {
                i = try scanString(at: i)
            } else if let op = scanOperator(at: i) {
                switch op {
                case "(": brackets.append(")")
                case "[": brackets.append("]")
                case "{": brackets.append("}")
                case ")", "]", "}":
                    guard let expected = brackets.popLast() else { throw error("unexpected '\(op)'", at: i) }
                    guard String(expected) == op else { throw error("unexpected '\(op)', expected '\(expected)'", at: i) }
                default: break
                }
                emit(.op, op, at: i)
                i += op.unicodeScalars.count
            } else {
                throw error("unexpected character '\(Character(c))'", at: i)
            }
        }
    }

    private func skipWhitespace(from offset: Int) -> Int {
        var j = offset
        while j < source.count, isPythonWhitespace(source[j]) { j += 1 }
        return j
    }

    private static let operators = ["//", "**", "==", "!=", "<=", ">=", "+", "-", "/", "*", "%", "~", "[", "]", "(",
                                    ")", "{", "}", "<", ">", "=", ".", ":", "|", ",", ";"]

    private func scanOperator(at i: Int) -> String? {
        Self.operators.first { at(i, $0) }
    }

    private func isDigit(_ s: Unicode.Scalar) -> Bool { ("0"..."9").contains(s) }
    private func isNameStart(_ s: Unicode.Scalar) -> Bool {
        ("a"..."z").contains(s) || ("A"..."Z").contains(s) || s == "_"
    }
    private func isNameContinue(_ s: Unicode.Scalar) -> Bool { isNameStart(s) || isDigit(s) }

    /// Digits with single `_` separators between them, from `i`; the offset after them or nil.
    private func digitRun(at i: Int) -> Int? {
        guard i < source.count, isDigit(source[i]) else { return nil }
        var j = i + 1
        while j < source.count {
            if isDigit(source[j]) { j += 1 } else if source[j] == "_", j + 1 < source.count, isDigit(source[j + 1]) {
                j += 2
            } else { break }
        }
        return j
    }

    /// Jinja's float_re then integer_re: `1`, `1_000`, `1.5`, `1e3`, `1.5E-3` (no leading `.`; not after a `.`,
    /// so `x.0.1` stays attribute access).
    private func scanNumber(at i: Int) -> (offset: Int, isFloat: Bool)? {
        guard let intEnd = digitRun(at: i) else { return nil }
        if i > 0, source[i - 1] == "." { return (intEnd, false) }
        var j = intEnd
        var isFloat = false
        if j < source.count, source[j] == ".", let fracEnd = digitRun(at: j + 1) {
            j = fracEnd
            isFloat = true
        }
        if j < source.count, source[j] == "e" || source[j] == "E" {
            var k = j + 1
            if k < source.count, source[k] == "+" || source[k] == "-" { k += 1 }
            if let expEnd = digitRun(at: k) { j = expEnd; isFloat = true }
        }
        return (j, isFloat)
    }

    /// A quoted string, unescaped as Python's `unicode-escape` codec does (what Jinja applies to string tokens).
    private mutating func scanString(at i: Int) throws(TemplateError) -> Int {
        let quote = source[i]
        var j = i + 1
        var out = String.UnicodeScalarView()
        while true {
            guard j < source.count else { throw error("unterminated string", at: i) }
            let c = source[j]
            if c == quote { break }
            if c != "\\" { out.append(c); j += 1; continue }
            guard j + 1 < source.count else { throw error("unterminated string", at: i) }
            let e = source[j + 1]
            j += 2
            switch e {
            case "\n": break
            case "\\": out.append("\\")
            case "'": out.append("'")
            case "\"": out.append("\"")
            case "a": out.append("\u{07}")
            case "b": out.append("\u{08}")
            case "f": out.append("\u{0C}")
            case "n": out.append("\n")
            case "r": out.append("\r")
            case "t": out.append("\t")
            case "v": out.append("\u{0B}")
            case "0"..."7":
                var value = e.value - 48
                var count = 1
                while count < 3, j < source.count, ("0"..."7").contains(source[j]) {
                    value = value * 8 + source[j].value - 48
                    j += 1
                    count += 1
                }
                out.append(Unicode.Scalar(value)!)
            case "x", "u", "U":
                let width = e == "x" ? 2 : (e == "u" ? 4 : 8)
                var value: UInt32 = 0
                for k in 0..<width {
                    guard j + k < source.count, source[j + k].isASCII, let d = hexDigit(UInt8(source[j + k].value)) else {
                        throw error("truncated \\\(e) escape in string", at: j - 2)
                    }
                    value = value &* 16 &+ d
                }
                j += width
                guard let scalar = Unicode.Scalar(value) else {
                    throw error("\\\(e) escape is not a Unicode scalar value", at: j - width - 2)
                }
                out.append(scalar)
            case "N": throw TemplateError(.unsupported, "\\N{...} escapes in strings are not supported").located(position(j - 2))
            default:
                out.append("\\")
                out.append(e)
            }
        }
        tokens.append(Token(kind: .string, value: String(out), position: position(i)))
        return j + 1
    }
}

/// Python's `str.isspace()` (and `\s` in its regular expressions).
func isPythonWhitespace(_ s: Unicode.Scalar) -> Bool {
    switch s.value {
    case 0x09...0x0D, 0x1C...0x20, 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000: true
    default: false
    }
}
