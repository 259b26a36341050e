// Python methods templates call on values (`content.strip()`, `text.split('</think>')`, `d.get('k', 0)`,
// `tool.items()`), and the globals transformers gives chat templates: `range`, `namespace`, `dict`,
// `raise_exception(message)`, `strftime_now(format)`. Methods that mutate a list or dict are refused as the
// sandbox refuses them (a security error when called).
import Foundation

extension Interpreter {
    /// `object.name` as a Python bound method, if the type has it.
    func boundMethod(_ object: Value, _ name: String) -> Value? {
        switch object {
        case .string(let s): return stringMethod(s, name)
        case .dict(let d): return dictMethod(d, object, name)
        case .list(let items), .tuple(let items):
            switch name {
            case "append", "extend", "insert", "pop", "remove", "reverse", "sort", "clear":
                if case .list = object { return .undefined(.unsafe(object, name)) }
                return nil
            case "count":
                return method(name) { _, a throws(TemplateError) in
                    try a.check(["value"])
                    guard let x = a[0, "value"] else { throw TemplateError(.type, "count() takes exactly one argument") }
                    return .int(items.filter { pythonEquals($0, x) }.count)
                }
            case "index":
                return method(name) { _, a throws(TemplateError) in
                    try a.check(["value"])
                    guard let x = a[0, "value"], let k = items.firstIndex(where: { pythonEquals($0, x) }) else {
                        throw TemplateError(.type, "value is not in list")
                    }
                    return .int(k)
                }
            case "copy" where { if case .list = object { true } else { false } }():
                return method(name) { _, _ in .list(items) }
            default: return nil
            }
        default:
            return nil
        }
    }

    private func method(_ name: String, _ body: @escaping (Interpreter, CallArguments) throws(TemplateError) -> Value) -> Value {
        .function(Function(name: name) { i, args, kwargs throws(TemplateError) in
            try body(i, CallArguments(callee: name, positional: args, keyword: kwargs))
        })
    }

    private func dictMethod(_ d: OrderedDict, _ object: Value, _ name: String) -> Value? {
        switch name {
        case "get":
            return method(name) { _, a throws(TemplateError) in
                try a.check(["key", "default"])
                guard let key = a[0, "key"] else { throw TemplateError(.type, "get expected at least 1 argument, got 0") }
                if case .string(let k) = key, let v = d[k] { return v }
                return a[1, "default"] ?? .none
            }
        case "items": return method(name) { _, a throws(TemplateError) in
            try a.check([])
            return .list(d.pairs.map { .tuple([.string($0.0), $0.1]) })
        }
        case "keys": return method(name) { _, a throws(TemplateError) in try a.check([]); return .list(d.keys.map(Value.string)) }
        case "values": return method(name) { _, a throws(TemplateError) in try a.check([]); return .list(d.values) }
        case "copy": return method(name) { _, _ in .dict(d) }
        case "pop", "popitem", "setdefault", "update", "clear": return .undefined(.unsafe(object, name))
        default: return nil
        }
    }

    private func stringMethod(_ s: String, _ name: String) -> Value? {
        func strip(leading: Bool, trailing: Bool) -> Value {
            method(name) { _, a throws(TemplateError) in
                try a.check(["chars"])
                return .string(pythonStrip(s, try a.string(0, "chars"), leading: leading, trailing: trailing))
            }
        }
        func affix(prefix: Bool) -> Value {
            method(name) { _, a throws(TemplateError) in
                try a.check(["prefix"])
                guard let arg = a[0, "prefix"] else { throw TemplateError(.type, "\(name)() takes at least 1 argument") }
                var candidates: [Value] = [arg]
                if case .tuple(let t) = arg { candidates = t }
                let bytes = Array(s.utf8)
                for candidate in candidates {
                    guard case .string(let c) = candidate else {
                        throw TemplateError(.type, "\(name) first arg must be str or a tuple of str, not \(candidate.typeName)")
                    }
                    let cb = Array(c.utf8)
                    if prefix ? bytes.starts(with: cb) : bytes.reversed().starts(with: cb.reversed()) { return .bool(true) }
                }
                return .bool(false)
            }
        }
        func predicate(_ test: @escaping (String) -> Bool) -> Value {
            method(name) { _, a throws(TemplateError) in try a.check([]); return .bool(test(s)) }
        }
        switch name {
        case "strip": return strip(leading: true, trailing: true)
        case "lstrip": return strip(leading: true, trailing: false)
        case "rstrip": return strip(leading: false, trailing: true)
        case "startswith": return affix(prefix: true)
        case "endswith": return affix(prefix: false)
        case "upper": return method(name) { _, a throws(TemplateError) in try a.check([]); return .string(s.uppercased()) }
        case "lower", "casefold":
            return method(name) { _, a throws(TemplateError) in try a.check([]); return .string(s.lowercased()) }
        case "title": return method(name) { _, a throws(TemplateError) in try a.check([]); return .string(pythonTitle(s)) }
        case "capitalize":
            return method(name) { _, a throws(TemplateError) in try a.check([]); return .string(pythonCapitalize(s)) }
        case "split", "rsplit":
            return method(name) { _, a throws(TemplateError) in
                try a.check(["sep", "maxsplit"])
                let maxSplit = try a.int(1, "maxsplit", default: -1)
                let separator = try a.string(0, "sep")
                if name == "rsplit" && maxSplit >= 0 {
                    // rsplit with a bound: split the reversed text with the reversed separator.
                    let reversed = String(scalars: s.unicodeScalars.reversed())
                    let sep = separator.map { String(scalars: $0.unicodeScalars.reversed()) }
                    return .list(try pythonSplit(reversed, sep, maxSplit: maxSplit).reversed()
                        .map { .string(String(scalars: $0.unicodeScalars.reversed())) })
                }
                return .list(try pythonSplit(s, separator, maxSplit: maxSplit).map(Value.string))
            }
        case "splitlines":
            return method(name) { _, a throws(TemplateError) in
                try a.check([])
                return .list(pythonSplitLines(s).map(Value.string))
            }
        case "replace":
            return method(name) { i, a throws(TemplateError) in
                try a.check(["old", "new", "count"])
                guard let old = try a.string(0, "old"), let new = try a.string(1, "new") else {
                    throw TemplateError(.type, "replace expected at least 2 arguments")
                }
                return .string(try Filters.checkedReplace(i, s, old, new, count: try a.int(2, "count", default: -1)))
            }
        case "join":
            return method(name) { i, a throws(TemplateError) in
                try a.check(["iterable"])
                guard let items = a[0, "iterable"] else { throw TemplateError(.type, "join() takes exactly one argument") }
                var parts: [String] = []
                for item in try i.iterate(items) {
                    guard case .string(let p) = item else {
                        throw TemplateError(.type, "sequence item \(parts.count): expected str instance, \(item.typeName) found")
                    }
                    parts.append(p)
                }
                let out = parts.joined(separator: s)
                try i.checkSize(out.utf8.count, "a joined string")
                return .string(out)
            }
        case "find", "rfind", "count", "index", "rindex":
            return method(name) { _, a throws(TemplateError) in
                try a.check(["sub"])
                guard let sub = try a.string(0, "sub") else { throw TemplateError(.type, "\(name)() takes at least 1 argument") }
                let bytes = Array(s.utf8)
                let hits = sub.isEmpty ? Array(0...bytes.count) : utf8Occurrences(bytes, Array(sub.utf8))
                if name == "count" { return .int(sub.isEmpty ? s.unicodeScalars.count + 1 : hits.count) }
                guard let hit = name.hasPrefix("r") ? hits.last : hits.first else {
                    if name.hasSuffix("index") { throw TemplateError(.type, "substring not found") }
                    return .int(-1)
                }
                // Byte offset to code point offset.
                return .int(String(decoding: bytes[..<hit], as: UTF8.self).unicodeScalars.count)
            }
        case "removeprefix", "removesuffix":
            return method(name) { _, a throws(TemplateError) in
                try a.check(["affix"])
                guard let affix = try a.string(0, "affix") else { throw TemplateError(.type, "\(name)() takes exactly one argument") }
                let bytes = Array(s.utf8), ab = Array(affix.utf8)
                if name == "removeprefix", bytes.starts(with: ab) { return .string(String(decoding: bytes[ab.count...], as: UTF8.self)) }
                if name == "removesuffix", !ab.isEmpty, bytes.reversed().starts(with: ab.reversed()) {
                    return .string(String(decoding: bytes[..<(bytes.count - ab.count)], as: UTF8.self))
                }
                return .string(s)
            }
        case "isdigit": return predicate { !$0.isEmpty && $0.unicodeScalars.allSatisfy { $0.properties.numericType == .digit || $0.properties.numericType == .decimal } }
        case "isalpha": return predicate { !$0.isEmpty && $0.unicodeScalars.allSatisfy { $0.properties.isAlphabetic } }
        case "isalnum": return predicate { !$0.isEmpty && $0.unicodeScalars.allSatisfy { $0.properties.isAlphabetic || $0.properties.numericType != nil } }
        case "isspace": return predicate { !$0.isEmpty && $0.unicodeScalars.allSatisfy(isPythonWhitespace) }
        case "islower": return predicate { $0.unicodeScalars.contains { $0.properties.isLowercase } && $0.lowercased() == $0 }
        case "isupper": return predicate { $0.unicodeScalars.contains { $0.properties.isUppercase } && $0.uppercased() == $0 }
        case "format", "format_map", "center", "ljust", "rjust", "zfill", "partition", "rpartition", "encode",
             "expandtabs", "swapcase", "translate", "isnumeric", "isdecimal", "istitle", "isidentifier",
             "isprintable", "isascii":
            return method(name) { _, _ throws(TemplateError) in
                throw TemplateError(.unsupported, "the string method '\(name)' is not supported")
            }
        default:
            return nil
        }
    }
}

/// The globals every chat template sees.
enum Globals {
    /// Jinja's sandbox refuses ranges longer than this (`MAX_RANGE`).
    static let maxRange = 100_000

    static func make() -> [String: Value] {
        [
            "range": .function(Function(name: "range") { _, args, kwargs throws(TemplateError) in
                guard kwargs.isEmpty, (1...3).contains(args.count) else {
                    throw TemplateError(.type, "range expected 1 to 3 integer arguments")
                }
                var ints: [Int] = []
                for a in args {
                    guard case .int(let n)? = a.number else {
                        if a.isUndefined { throw undefinedError(a) }
                        throw TemplateError(.type, "'\(a.typeName)' object cannot be interpreted as an integer")
                    }
                    ints.append(n)
                }
                let (start, stop, step) = ints.count == 1 ? (0, ints[0], 1) : (ints[0], ints[1], ints.count == 3 ? ints[2] : 1)
                guard step != 0 else { throw TemplateError(.type, "range() arg 3 must not be zero") }
                let count = step > 0 ? max(0, (stop - start + step - 1) / step) : max(0, (start - stop - step - 1) / -step)
                guard count <= maxRange else {
                    throw TemplateError(.limit, "range too big: the sandbox blocks ranges larger than \(maxRange)")
                }
                return .list((0..<count).map { .int(start + $0 * step) })
            }),
            "namespace": .function(Function(name: "namespace") { _, args, kwargs throws(TemplateError) in
                var attributes = try dictArguments("namespace", args, kwargs)
                for key in attributes.keys where key.hasPrefix("_") {
                    throw TemplateError(.security, "chat templates cannot store underscore-prefixed attributes on a namespace, but got '\(key)'")
                }
                attributes = OrderedDict(attributes.pairs)
                return .namespace(Namespace(attributes))
            }),
            "dict": .function(Function(name: "dict") { _, args, kwargs throws(TemplateError) in
                .dict(try dictArguments("dict", args, kwargs))
            }),
            "raise_exception": .function(Function(name: "raise_exception") { _, args, kwargs throws(TemplateError) in
                let message = args.first ?? kwargs.first { $0.0 == "message" }?.1 ?? .none
                throw TemplateError(.raised, message.str)
            }),
            "strftime_now": .function(Function(name: "strftime_now") { _, args, _ throws(TemplateError) in
                guard case .string(let format)? = args.first else {
                    throw TemplateError(.type, "strftime_now() needs a format string")
                }
                return .string(strftimeNow(format))
            }),
        ]
    }

    /// `dict(mapping_or_pairs, **kwargs)`.
    private static func dictArguments(_ name: String, _ args: [Value], _ kwargs: [(String, Value)]) throws(TemplateError) -> OrderedDict {
        guard args.count <= 1 else { throw TemplateError(.type, "\(name)() expected at most 1 positional argument") }
        var d = OrderedDict()
        switch args.first {
        case nil: break
        case .dict(let given)?: d = given
        case .list(let pairs)?, .tuple(let pairs)?:
            for pair in pairs {
                guard case .string(let k)? = (pair.pairItems?.first), let v = pair.pairItems?.last, pair.pairItems?.count == 2 else {
                    throw TemplateError(.type, "\(name)(): expected (key, value) pairs with string keys")
                }
                d[k] = v
            }
        case let other?:
            throw TemplateError(.type, "\(name)(): '\(other.typeName)' object is not iterable as pairs")
        }
        for (k, v) in kwargs { d[k] = v }
        return d
    }

    /// The local time formatted by C's strftime, as Python's `datetime.now().strftime` does.
    static func strftimeNow(_ format: String) -> String {
        var now = time(nil)
        var parts = tm()
        localtime_r(&now, &parts)
        var buffer = [CChar](repeating: 0, count: 512)
        let n = strftime(&buffer, buffer.count, format, &parts)
        return String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

extension Value {
    fileprivate var pairItems: [Value]? {
        switch self {
        case .list(let a), .tuple(let a): a
        default: nil
        }
    }
}
