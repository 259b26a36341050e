// Python's text behaviour that chat templates depend on: `repr` of floats and strings, `json.dumps` as
// transformers' `tojson` calls it, and the `str` methods (strip, split, title, ...). Strings are handled as
// Unicode scalars (Python's code points), never as Swift Characters: `len('e\u0301')` is 2, as in Python.
import Foundation

/// `repr(float)`: the shortest digits that round-trip, fixed notation for 1e-4 ≤ |x| < 1e16, else `1e+16` style.
func pythonFloatRepr(_ d: Double) -> String {
    if d.isNaN { return "nan" }
    if d.isInfinite { return d < 0 ? "-inf" : "inf" }
    if d == 0 { return d.sign == .minus ? "-0.0" : "0.0" }
    // Swift's description also gives the shortest round-trip digits; only the layout differs from Python's.
    let text = "\(d.magnitude)"
    var mantissa = Substring(text)
    var exponent = 0
    if let e = text.firstIndex(where: { $0 == "e" || $0 == "E" }) {
        mantissa = text[..<e]
        exponent = Int(text[text.index(after: e)...])!
    }
    var digits = ""
    var pointPosition = mantissa.count
    if let dot = mantissa.firstIndex(of: ".") {
        pointPosition = mantissa.distance(from: mantissa.startIndex, to: dot)
        digits = String(mantissa[..<dot]) + String(mantissa[mantissa.index(after: dot)...])
    } else {
        digits = String(mantissa)
    }
    // value = 0.digits × 10^decimalPoint after stripping leading zeros
    var decimalPoint = pointPosition + exponent
    while digits.hasPrefix("0") && digits.count > 1 {
        digits.removeFirst()
        decimalPoint -= 1
    }
    while digits.hasSuffix("0") && digits.count > 1 { digits.removeLast() }
    let sign = d < 0 ? "-" : ""
    if decimalPoint > -4 && decimalPoint <= 16 {
        if decimalPoint <= 0 { return sign + "0." + String(repeating: "0", count: -decimalPoint) + digits }
        if decimalPoint >= digits.count {
            return sign + digits + String(repeating: "0", count: decimalPoint - digits.count) + ".0"
        }
        let i = digits.index(digits.startIndex, offsetBy: decimalPoint)
        return sign + digits[..<i] + "." + digits[i...]
    }
    let e = decimalPoint - 1
    let head = digits.count == 1 ? digits : String(digits.first!) + "." + digits.dropFirst()
    let exponentDigits = String(abs(e))
    return sign + head + "e" + (e < 0 ? "-" : "+") + (exponentDigits.count < 2 ? "0" : "") + exponentDigits
}

/// Python's `str.isprintable()` for one code point (what `repr` leaves unescaped).
private func isPrintable(_ s: Unicode.Scalar) -> Bool {
    if s == " " { return true }
    switch s.properties.generalCategory {
    case .control, .format, .surrogate, .privateUse, .unassigned, .lineSeparator, .paragraphSeparator, .spaceSeparator:
        return false
    default: return true
    }
}

/// `repr(str)`: single quotes unless the text has `'` and no `"`.
func pythonStringRepr(_ s: String) -> String {
    let quote: Unicode.Scalar = s.unicodeScalars.contains("'") && !s.unicodeScalars.contains("\"") ? "\"" : "'"
    var out = String.UnicodeScalarView()
    out.append(quote)
    for c in s.unicodeScalars {
        switch c {
        case quote, "\\": out.append("\\"); out.append(c)
        case "\n": out.append(contentsOf: "\\n".unicodeScalars)
        case "\r": out.append(contentsOf: "\\r".unicodeScalars)
        case "\t": out.append(contentsOf: "\\t".unicodeScalars)
        default:
            if isPrintable(c) {
                out.append(c)
            } else if c.value < 0x100 {
                out.append(contentsOf: String(format: "\\x%02x", c.value).unicodeScalars)
            } else if c.value < 0x10000 {
                out.append(contentsOf: String(format: "\\u%04x", c.value).unicodeScalars)
            } else {
                out.append(contentsOf: String(format: "\\U%08x", c.value).unicodeScalars)
            }
        }
    }
    out.append(quote)
    return String(out)
}

// MARK: - json.dumps

struct JSONOptions {
    var ensureASCII = false
    /// nil: one line; else newline + this many spaces per level (a string indent is used as given).
    var indent: String? = nil
    var itemSeparator: String? = nil
    var keySeparator = ": "
    var sortKeys = false
}

/// `json.dumps(value, ensure_ascii=..., indent=..., separators=..., sort_keys=...)`.
func pythonJSONDumps(_ value: Value, _ options: JSONOptions, maxBytes: Int) throws(TemplateError) -> String {
    var out = ""
    let itemSeparator = options.itemSeparator ?? (options.indent == nil ? ", " : ",")
    func write(_ v: Value, _ level: Int) throws(TemplateError) {
        if out.utf8.count > maxBytes { throw TemplateError(.limit, "tojson output is over \(maxBytes) bytes") }
        switch v {
        case .none: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .int(let i): out += String(i)
        case .double(let d):
            if d.isNaN { out += "NaN" } else if d.isInfinite { out += d < 0 ? "-Infinity" : "Infinity" } else {
                out += pythonFloatRepr(d)
            }
        case .string(let s): out += jsonQuote(s, ensureASCII: options.ensureASCII)
        case .list(let items), .tuple(let items):
            if items.isEmpty { out += "[]"; return }
            out += "["
            for (i, item) in items.enumerated() {
                if i > 0 { out += itemSeparator }
                if let indent = options.indent { out += "\n" + String(repeating: indent, count: level + 1) }
                try write(item, level + 1)
            }
            if let indent = options.indent { out += "\n" + String(repeating: indent, count: level) }
            out += "]"
        case .dict(let d):
            if d.count == 0 { out += "{}"; return }
            out += "{"
            var pairs = d.pairs
            if options.sortKeys {
                pairs.sort { $0.0.unicodeScalars.lexicographicallyPrecedes($1.0.unicodeScalars) { $0.value < $1.value } }
            }
            for (i, (key, item)) in pairs.enumerated() {
                if i > 0 { out += itemSeparator }
                if let indent = options.indent { out += "\n" + String(repeating: indent, count: level + 1) }
                out += jsonQuote(key, ensureASCII: options.ensureASCII) + options.keySeparator
                try write(item, level + 1)
            }
            if let indent = options.indent { out += "\n" + String(repeating: indent, count: level) }
            out += "}"
        default:
            throw TemplateError(.type, "Object of type \(v.typeName) is not JSON serializable")
        }
    }
    try write(value, 0)
    return out
}

/// A JSON string literal as Python's json module writes it.
func jsonQuote(_ s: String, ensureASCII: Bool) -> String {
    var out = String.UnicodeScalarView()
    out.append("\"")
    for c in s.unicodeScalars {
        switch c {
        case "\"": out.append(contentsOf: "\\\"".unicodeScalars)
        case "\\": out.append(contentsOf: "\\\\".unicodeScalars)
        case "\n": out.append(contentsOf: "\\n".unicodeScalars)
        case "\r": out.append(contentsOf: "\\r".unicodeScalars)
        case "\t": out.append(contentsOf: "\\t".unicodeScalars)
        case "\u{08}": out.append(contentsOf: "\\b".unicodeScalars)
        case "\u{0C}": out.append(contentsOf: "\\f".unicodeScalars)
        default:
            if c.value < 0x20 || (ensureASCII && c.value > 0x7E) {
                if c.value >= 0x10000 {
                    let v = c.value - 0x10000
                    out.append(contentsOf: String(format: "\\u%04x\\u%04x", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF))
                        .unicodeScalars)
                } else {
                    out.append(contentsOf: String(format: "\\u%04x", c.value).unicodeScalars)
                }
            } else {
                out.append(c)
            }
        }
    }
    out.append("\"")
    return String(out)
}

// MARK: - str methods

extension String {
    var scalars: [Unicode.Scalar] { Array(unicodeScalars) }
    init(scalars: some Sequence<Unicode.Scalar>) {
        var view = String.UnicodeScalarView()
        view.append(contentsOf: scalars)
        self = String(view)
    }
}

/// `str.strip(chars)` / `lstrip` / `rstrip`: whitespace, or the given characters.
func pythonStrip(_ s: String, _ chars: String?, leading: Bool, trailing: Bool) -> String {
    let a = s.scalars
    let set = chars.map { Set($0.unicodeScalars) }
    let strip: (Unicode.Scalar) -> Bool = { set?.contains($0) ?? isPythonWhitespace($0) }
    var lo = 0, hi = a.count
    if leading { while lo < hi, strip(a[lo]) { lo += 1 } }
    if trailing { while hi > lo, strip(a[hi - 1]) { hi -= 1 } }
    return String(scalars: a[lo..<hi])
}

/// Where `needle` occurs in `haystack` (UTF-8 code units; matches fall on code point boundaries for valid text).
func utf8Occurrences(_ haystack: [UInt8], _ needle: [UInt8], limit: Int = .max) -> [Int] {
    guard !needle.isEmpty, needle.count <= haystack.count else { return [] }
    var found: [Int] = []
    var i = 0
    while i <= haystack.count - needle.count, found.count < limit {
        if haystack[i] == needle[0], haystack[i..<i + needle.count].elementsEqual(needle) {
            found.append(i)
            i += needle.count
        } else {
            i += 1
        }
    }
    return found
}

/// `str.split(sep, maxsplit)`; no `sep`: runs of whitespace, ends dropped.
func pythonSplit(_ s: String, _ separator: String?, maxSplit: Int) throws(TemplateError) -> [String] {
    if let separator {
        let sep = Array(separator.utf8)
        guard !sep.isEmpty else { throw TemplateError(.type, "empty separator") }
        let bytes = Array(s.utf8)
        let hits = utf8Occurrences(bytes, sep, limit: maxSplit < 0 ? .max : maxSplit)
        var parts: [String] = []
        var start = 0
        for h in hits {
            parts.append(String(decoding: bytes[start..<h], as: UTF8.self))
            start = h + sep.count
        }
        parts.append(String(decoding: bytes[start...], as: UTF8.self))
        return parts
    }
    let a = s.scalars
    var parts: [String] = []
    var i = 0
    while i < a.count {
        while i < a.count, isPythonWhitespace(a[i]) { i += 1 }
        if i == a.count { break }
        if maxSplit >= 0, parts.count == maxSplit {
            var end = a.count
            while end > i, isPythonWhitespace(a[end - 1]) { end -= 1 }
            parts.append(String(scalars: a[i..<end]))
            break
        }
        let start = i
        while i < a.count, !isPythonWhitespace(a[i]) { i += 1 }
        parts.append(String(scalars: a[start..<i]))
    }
    return parts
}

/// `str.replace(old, new, count)`.
func pythonReplace(_ s: String, _ old: String, _ new: String, count: Int) -> String {
    if old.isEmpty {
        // Python inserts `new` between every code point and at both ends.
        var out = ""
        var n = 0
        for c in s.unicodeScalars {
            if count < 0 || n < count { out += new; n += 1 }
            out.unicodeScalars.append(c)
        }
        if count < 0 || n < count { out += new }
        return out
    }
    let bytes = Array(s.utf8), oldBytes = Array(old.utf8), newBytes = Array(new.utf8)
    let hits = utf8Occurrences(bytes, oldBytes, limit: count < 0 ? .max : count)
    if hits.isEmpty { return s }
    var out: [UInt8] = []
    out.reserveCapacity(bytes.count + hits.count * max(0, newBytes.count - oldBytes.count))
    var start = 0
    for h in hits {
        out.append(contentsOf: bytes[start..<h])
        out.append(contentsOf: newBytes)
        start = h + oldBytes.count
    }
    out.append(contentsOf: bytes[start...])
    return String(decoding: out, as: UTF8.self)
}

/// `str.splitlines()`: Python's line boundaries, `\r\n` as one.
func pythonSplitLines(_ s: String) -> [String] {
    let a = s.scalars
    var lines: [String] = []
    var start = 0, i = 0
    while i < a.count {
        switch a[i].value {
        case 0x0A, 0x0B, 0x0C, 0x1C, 0x1D, 0x1E, 0x85, 0x2028, 0x2029:
            lines.append(String(scalars: a[start..<i]))
            i += 1
            start = i
        case 0x0D:
            lines.append(String(scalars: a[start..<i]))
            i += (i + 1 < a.count && a[i + 1] == "\n") ? 2 : 1
            start = i
        default:
            i += 1
        }
    }
    if start < a.count { lines.append(String(scalars: a[start...])) }
    return lines
}

private func isCased(_ c: Unicode.Scalar) -> Bool { c.properties.isUppercase || c.properties.isLowercase || c.properties.generalCategory == .titlecaseLetter }

/// Python's `str.title()`: a letter after a non-letter starts a word.
func pythonTitle(_ s: String) -> String {
    var out = ""
    var previousCased = false
    for c in s.unicodeScalars {
        if c.properties.isAlphabetic || isCased(c) {
            out += previousCased ? String(c).lowercased() : String(c.properties.titlecaseMapping)
            previousCased = isCased(c)
        } else {
            out.unicodeScalars.append(c)
            previousCased = false
        }
    }
    return out
}

/// Jinja's `title` filter: words start after whitespace or one of `-({[<`.
func jinjaTitle(_ s: String) -> String {
    var out = ""
    var atWordStart = true
    for c in s.unicodeScalars {
        let separator = isPythonWhitespace(c) || "-({[<".unicodeScalars.contains(c)
        if separator {
            out.unicodeScalars.append(c)
            atWordStart = true
        } else if atWordStart {
            out += String(c).uppercased()
            atWordStart = false
        } else {
            out += String(c).lowercased()
        }
    }
    return out
}

/// `str.capitalize()`: the first character in title case, the rest lower.
func pythonCapitalize(_ s: String) -> String {
    guard let first = s.unicodeScalars.first else { return s }
    return String(first.properties.titlecaseMapping) + String(scalars: s.unicodeScalars.dropFirst()).lowercased()
}
