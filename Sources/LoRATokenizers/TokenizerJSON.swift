// A JSON reader for tokenizer.json. Foundation's decoders key dictionaries by `String`, whose equality is
// canonical equivalence ("é" == "e\u{301}"), so two distinct vocabulary tokens could collapse into one; this
// reader keeps every string's exact scalars and every object's key order (a vocabulary is an object of
// token → id), reads a 10 MB file in a fraction of a second, and rejects what serde_json rejects (lone
// surrogates, control characters in strings, trailing text, invalid UTF-8).
import Foundation
import LoRAFormats

/// A JSON value with exact strings and objects as ordered key/value lists.
enum JSONNode {
    case null
    case bool(Bool)
    /// A number; `integer` is set when its text has no fraction or exponent and fits in Int.
    case number(Double, integer: Int?)
    case string(String)
    case array([JSONNode])
    case object([JSONMember])

    var string: String? { if case .string(let s) = self { s } else { nil } }
    var array: [JSONNode]? { if case .array(let a) = self { a } else { nil } }
    var pairs: [JSONMember]? { if case .object(let o) = self { o } else { nil } }
    var bool: Bool? { if case .bool(let b) = self { b } else { nil } }
    var int: Int? { if case .number(_, let i) = self { i } else { nil } }
    var double: Double? { if case .number(let d, _) = self { d } else { nil } }
    var isNull: Bool { if case .null = self { true } else { false } }

    /// The value of `key` in an object (the last one when a key repeats, as serde does); nil when absent or not
    /// an object. Keys compare by exact scalars.
    subscript(key: String) -> JSONNode? {
        guard case .object(let pairs) = self else { return nil }
        return pairs.last(where: { $0.key.utf8.elementsEqual(key.utf8) })?.value
    }

    /// A short description of the value's kind, for error messages.
    var kind: String {
        switch self {
        case .null: "null"
        case .bool: "a boolean"
        case .number: "a number"
        case .string(let s): "the string \(JSONValue.quote(s.count > 40 ? String(s.prefix(40)) + "…" : s))"
        case .array: "an array"
        case .object: "an object"
        }
    }

    /// Parses one JSON document; `path` names the file in errors.
    static func parse(_ data: Data, path: String) throws -> JSONNode {
        try data.withUnsafeBytes { raw in
            var parser = JSONParser(bytes: raw.bindMemory(to: UInt8.self), path: path)
            parser.skipSpace()
            let value = try parser.value(depth: 0)
            parser.skipSpace()
            guard parser.at == parser.bytes.count else { throw parser.error("unexpected text after the JSON value") }
            return value
        }
    }
}

private struct JSONParser {
    let bytes: UnsafeBufferPointer<UInt8>
    let path: String
    var at = 0

    init(bytes: UnsafeBufferPointer<UInt8>, path: String) { (self.bytes, self.path) = (bytes, path) }

    func error(_ reason: String) -> FormatError {
        // The line number helps find the spot in a large file.
        var line = 1
        for i in 0..<min(at, bytes.count) where bytes[i] == UInt8(ascii: "\n") { line += 1 }
        return .invalid(path: path, reason: "not valid JSON at line \(line) (byte \(at)): \(reason)")
    }

    mutating func skipSpace() {
        while at < bytes.count, [0x20, 0x0A, 0x0D, 0x09].contains(bytes[at]) { at += 1 }
    }

    mutating func expect(_ word: String) throws {
        for b in word.utf8 {
            guard at < bytes.count, bytes[at] == b else { throw error("expected \(word)") }
            at += 1
        }
    }

    mutating func value(depth: Int) throws -> JSONNode {
        guard depth < 256 else { throw error("nested more than 256 deep") }
        guard at < bytes.count else { throw error("the file ends where a value should be") }
        switch bytes[at] {
        case UInt8(ascii: "{"):
            at += 1
            var pairs: [JSONMember] = []
            skipSpace()
            if at < bytes.count, bytes[at] == UInt8(ascii: "}") { at += 1; return .object(pairs) }
            while true {
                skipSpace()
                guard at < bytes.count, bytes[at] == UInt8(ascii: "\"") else { throw error("expected a key string") }
                let key = try string()
                skipSpace()
                try expect(":")
                skipSpace()
                pairs.append(JSONMember(key: key, value: try value(depth: depth + 1)))
                skipSpace()
                guard at < bytes.count else { throw error("the file ends inside an object") }
                if bytes[at] == UInt8(ascii: ",") { at += 1; continue }
                if bytes[at] == UInt8(ascii: "}") { at += 1; return .object(pairs) }
                throw error("expected , or } in an object")
            }
        case UInt8(ascii: "["):
            at += 1
            var items: [JSONNode] = []
            skipSpace()
            if at < bytes.count, bytes[at] == UInt8(ascii: "]") { at += 1; return .array(items) }
            while true {
                skipSpace()
                items.append(try value(depth: depth + 1))
                skipSpace()
                guard at < bytes.count else { throw error("the file ends inside an array") }
                if bytes[at] == UInt8(ascii: ",") { at += 1; continue }
                if bytes[at] == UInt8(ascii: "]") { at += 1; return .array(items) }
                throw error("expected , or ] in an array")
            }
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): try expect("true"); return .bool(true)
        case UInt8(ascii: "f"): try expect("false"); return .bool(false)
        case UInt8(ascii: "n"): try expect("null"); return .null
        default: return try number()
        }
    }

    mutating func number() throws -> JSONNode {
        let start = at
        var integral = true
        if at < bytes.count, bytes[at] == UInt8(ascii: "-") { at += 1 }
        let digitsStart = at
        while at < bytes.count, (0x30...0x39).contains(bytes[at]) { at += 1 }
        guard at > digitsStart else { throw error("expected a value") }
        guard bytes[digitsStart] != 0x30 || at == digitsStart + 1 else { throw error("a number has a leading zero") }
        if at < bytes.count, bytes[at] == UInt8(ascii: ".") {
            integral = false
            at += 1
            let fraction = at
            while at < bytes.count, (0x30...0x39).contains(bytes[at]) { at += 1 }
            guard at > fraction else { throw error("a number has no digits after its point") }
        }
        if at < bytes.count, bytes[at] == UInt8(ascii: "e") || bytes[at] == UInt8(ascii: "E") {
            integral = false
            at += 1
            if at < bytes.count, bytes[at] == UInt8(ascii: "+") || bytes[at] == UInt8(ascii: "-") { at += 1 }
            let exponent = at
            while at < bytes.count, (0x30...0x39).contains(bytes[at]) { at += 1 }
            guard at > exponent else { throw error("a number has no exponent digits") }
        }
        let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<at]), as: UTF8.self)
        let integer = integral ? Int(text) : nil
        guard let double = Double(text) else { throw error("unreadable number \(text)") }
        return .number(double, integer: integer)
    }

    mutating func hex4() throws -> UInt32 {
        guard at + 4 <= bytes.count else { throw error("the file ends inside a \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let b = bytes[at]
            let digit: UInt8
            switch b {
            case 0x30...0x39: digit = b - 0x30
            case 0x41...0x46: digit = b - 0x41 + 10
            case 0x61...0x66: digit = b - 0x61 + 10
            default: throw error("a \\u escape has a non-hex digit")
            }
            value = value << 4 | UInt32(digit)
            at += 1
        }
        return value
    }

    /// A string starting at the opening quote.
    mutating func string() throws -> String {
        at += 1
        let start = at
        // Fast path: no escapes. The bytes must still be valid UTF-8.
        while at < bytes.count, bytes[at] != UInt8(ascii: "\""), bytes[at] != UInt8(ascii: "\\"), bytes[at] >= 0x20 { at += 1 }
        guard at < bytes.count else { throw error("the file ends inside a string") }
        if bytes[at] == UInt8(ascii: "\"") {
            let slice = UnsafeBufferPointer(rebasing: bytes[start..<at])
            at += 1
            guard let s = String(validating: slice, as: UTF8.self) else { throw error("a string is not valid UTF-8") }
            return s
        }
        var utf8 = Array(UnsafeBufferPointer(rebasing: bytes[start..<at]))
        while true {
            guard at < bytes.count else { throw error("the file ends inside a string") }
            let b = bytes[at]
            if b == UInt8(ascii: "\"") { at += 1; break }
            guard b >= 0x20 else { throw error("a string holds an unescaped control character") }
            guard b == UInt8(ascii: "\\") else { utf8.append(b); at += 1; continue }
            at += 1
            guard at < bytes.count else { throw error("the file ends inside an escape") }
            let e = bytes[at]
            at += 1
            switch e {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): utf8.append(e)
            case UInt8(ascii: "b"): utf8.append(0x08)
            case UInt8(ascii: "f"): utf8.append(0x0C)
            case UInt8(ascii: "n"): utf8.append(0x0A)
            case UInt8(ascii: "r"): utf8.append(0x0D)
            case UInt8(ascii: "t"): utf8.append(0x09)
            case UInt8(ascii: "u"):
                var code = try hex4()
                if (0xD800...0xDBFF).contains(code) {
                    guard at + 1 < bytes.count, bytes[at] == UInt8(ascii: "\\"), bytes[at + 1] == UInt8(ascii: "u") else {
                        throw error("a lone leading surrogate in a \\u escape")
                    }
                    at += 2
                    let low = try hex4()
                    guard (0xDC00...0xDFFF).contains(low) else { throw error("a leading surrogate without its trailing one") }
                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                } else if (0xDC00...0xDFFF).contains(code) {
                    throw error("a lone trailing surrogate in a \\u escape")
                }
                utf8.append(contentsOf: String(Character(Unicode.Scalar(code)!)).utf8)
            default: throw error("an unknown escape \\\(Character(Unicode.Scalar(e)))")
            }
        }
        guard let s = String(validating: utf8, as: UTF8.self) else { throw error("a string is not valid UTF-8") }
        return s
    }
}

/// One key/value of an object.
struct JSONMember {
    let key: String
    let value: JSONNode
}

/// A string compared and hashed by its exact UTF-8 bytes, not by canonical equivalence as `String` is:
/// tokenizers treat "é" and "e\u{301}" as different tokens.
struct ExactString: Hashable, Sendable {
    let string: String
    init(_ string: String) { self.string = string }

    static func == (a: ExactString, b: ExactString) -> Bool { a.string.utf8.elementsEqual(b.string.utf8) }

    func hash(into hasher: inout Hasher) {
        var s = string
        s.withUTF8 { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
    }
}
