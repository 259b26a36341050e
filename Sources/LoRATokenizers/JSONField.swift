// A JSON node together with the file it came from and its place in it ("pre_tokenizer.pretokenizers[1].pattern"),
// so every complaint about tokenizer.json names the file and the field.
import LoRAFormats

struct JSONField {
    let node: JSONNode
    let file: String
    let at: String

    func invalid(_ reason: String) -> FormatError { .invalid(path: file, reason: "\(at): \(reason)") }
    func unsupported(_ reason: String) -> FormatError { .unsupported(path: file, reason: "\(at): \(reason)") }

    /// The field `key`, nil when absent or null.
    func optional(_ key: String) -> JSONField? {
        guard let value = node[key], !value.isNull else { return nil }
        return JSONField(node: value, file: file, at: at.isEmpty ? key : "\(at).\(key)")
    }

    func required(_ key: String) throws -> JSONField {
        guard node.pairs != nil else { throw invalid("is \(node.kind), not an object") }
        guard let field = optional(key) else { throw invalid("has no \(key)") }
        return field
    }

    func string() throws -> String {
        guard let s = node.string else { throw invalid("is \(node.kind), not a string") }
        return s
    }

    func bool() throws -> Bool {
        guard let b = node.bool else { throw invalid("is \(node.kind), not true or false") }
        return b
    }

    func int(in range: ClosedRange<Int>) throws -> Int {
        guard let i = node.int, range.contains(i) else { throw invalid("is \(node.kind), not an integer in \(range)") }
        return i
    }

    func array() throws -> [JSONField] {
        guard let items = node.array else { throw invalid("is \(node.kind), not an array") }
        return items.enumerated().map { JSONField(node: $1, file: file, at: "\(at)[\($0)]") }
    }

    /// A single Unicode scalar given as a one-character string (Rust's `char`).
    func scalar() throws -> Unicode.Scalar {
        let s = try string()
        guard s.unicodeScalars.count == 1, let scalar = s.unicodeScalars.first else { throw invalid("\(JSONValue.quote(s)) is not one character") }
        return scalar
    }

    func optionalBool(_ key: String, default value: Bool) throws -> Bool { try optional(key)?.bool() ?? value }

    /// The `type` tag of a component.
    func type() throws -> String { try required("type").string() }
}
