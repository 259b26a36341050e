// Jinja's built-in filters that chat templates use, with Jinja 3.1's signatures and Python's results, and
// transformers' own `tojson` (json.dumps with ensure_ascii=False, indent, separators and sort_keys; no HTML
// escaping). A name outside this table is refused when the template is parsed, naming the filter.
import Foundation

/// A filter's or function's arguments, bound by position or keyword as Python binds them.
struct CallArguments {
    let callee: String
    let positional: [Value]
    let keyword: [(String, Value)]

    /// Checks that no more than `names.count` positional arguments and only known keywords were given.
    func check(_ names: [String]) throws(TemplateError) {
        if positional.count > names.count {
            throw TemplateError(.type, "\(callee)() takes at most \(names.count) argument(s) (\(positional.count) given)")
        }
        for (key, _) in keyword where !names.contains(key) {
            throw TemplateError(.type, "\(callee)() got an unexpected keyword argument '\(key)'")
        }
    }

    /// Parameter `index`, named `name`, if it was given.
    subscript(_ index: Int, _ name: String) -> Value? {
        if index < positional.count { return positional[index] }
        return keyword.first { $0.0 == name }?.1
    }

    func int(_ index: Int, _ name: String, default value: Int) throws(TemplateError) -> Int {
        guard let v = self[index, name] else { return value }
        guard case .int(let i)? = v.number else {
            throw TemplateError(.type, "\(callee)(): '\(name)' must be an integer, not \(v.typeName)")
        }
        return i
    }

    func bool(_ index: Int, _ name: String, default value: Bool) -> Bool {
        self[index, name]?.isTruthy ?? value
    }

    func string(_ index: Int, _ name: String) throws(TemplateError) -> String? {
        guard let v = self[index, name] else { return nil }
        if case .none = v { return nil }
        guard case .string(let s) = v else {
            throw TemplateError(.type, "\(callee)(): '\(name)' must be a string, not \(v.typeName)")
        }
        return s
    }
}

typealias FilterBody = @Sendable (Interpreter, Value, CallArguments) throws(TemplateError) -> Value

enum Filters {
    static let table: [String: FilterBody] = [
        "abs": abs, "capitalize": { _, v, a throws(TemplateError) in try a.check([]); return .string(pythonCapitalize(v.str)) },
        "center": center, "count": length, "d": defaultFilter, "default": defaultFilter, "dictsort": dictsort,
        "e": escape, "escape": escape, "first": first, "float": float, "indent": indent, "int": int,
        "items": items, "join": join, "last": last, "length": length, "list": list,
        "lower": { _, v, a throws(TemplateError) in try a.check([]); return .string(v.str.lowercased()) },
        "map": map, "max": { i, v, a throws(TemplateError) in try extreme(i, v, a, largest: true) },
        "min": { i, v, a throws(TemplateError) in try extreme(i, v, a, largest: false) },
        "reject": { i, v, a throws(TemplateError) in try select(i, v, a, attribute: false, keep: false) },
        "rejectattr": { i, v, a throws(TemplateError) in try select(i, v, a, attribute: true, keep: false) },
        "replace": replace, "reverse": reverse, "round": round, "safe": { _, v, _ throws(TemplateError) in .string(v.str) },
        "select": { i, v, a throws(TemplateError) in try select(i, v, a, attribute: false, keep: true) },
        "selectattr": { i, v, a throws(TemplateError) in try select(i, v, a, attribute: true, keep: true) },
        "sort": sort, "string": { _, v, a throws(TemplateError) in try a.check([]); return .string(v.str) },
        "sum": sum, "title": { _, v, a throws(TemplateError) in try a.check([]); return .string(jinjaTitle(v.str)) },
        "tojson": tojson, "trim": trim, "unique": unique,
        "upper": { _, v, a throws(TemplateError) in try a.check([]); return .string(v.str.uppercased()) },
        "wordcount": { _, v, a throws(TemplateError) in try a.check([]); return .int(try pythonSplit(v.str, nil, maxSplit: -1).count) },
    ]

    static func length(_ i: Interpreter, _ v: Value, _ a: CallArguments) throws(TemplateError) -> Value {
        try a.check([])
        switch v {
        case .undefined: return .int(0)
        case .string(let s): return .int(s.unicodeScalars.count)
        case .list(let l), .tuple(let l): return .int(l.count)
        case .dict(let d): return .int(d.count)
        default: throw TemplateError(.type, "object of type '\(v.typeName)' has no len()")
        }
    }

    static func defaultFilter(_ i: Interpreter, _ v: Value, _ a: CallArguments) throws(TemplateError) -> Value {
        try a.check(["default_value", "boolean"])
        let fallback = a[0, "default_value"] ?? .string("")
        if v.isUndefined || (a.bool(1, "boolean", default: false) && !v.isTruthy) { return fallback }
        return v
    }

    static func trim(_ i: Interpreter, _ v: Value, _ a: CallArguments) throws(TemplateError) -> Value {
        try a.check(["chars"])
        return .string(pythonStrip(v.str, try a.string(0, "chars"), leading: true, trailing: true))
    }

    static func tojson(_ i: Interpreter, _ v: Value, _ a: CallArguments) throws(TemplateError) -> Value {
        try a.check(["ensure_ascii", "indent", "separators", "sort_keys"])
        var options = JSONOptions()
        options.ensureASCII = a.bool(0, "ensure_ascii", default: false)
        options.sortKeys = a.bool(3, "sort_keys", default: false)
        switch a[1, "indent"] {
        case nil, .none?: break
        case .string(let s)?: options.indent = s
        case let value?:
            guard case .int(let n)? = value.number else {
                throw TemplateError(.type, "tojson(): indent must be an integer or a string")
            }
            try i.checkSize(n, "a tojson indent")
            options.indent = String(repeating: " ", count: max(0, n))
        }
        switch a[2, "separators"] {
        case nil, .none?: break
        case .list(let pair)?, .tuple(let pair)?:
            guard pair.count == 2, case .string(let item) = pair[0], case .string(let key) = pair[1] else {
                throw TemplateError(.type, "tojson(): separators must be two strings")
            }
            options.itemSeparator = item
            options.keySeparator = key
        default:
            throw TemplateError(.type, "tojson(): separators must be two strings")
        }
        return .string(try pythonJSONDumps(v, options, maxBytes: i.limits.maxOutputBytes))
    }

    static func join(_ i: Interpreter, _ v: Value, _ a: CallArguments) throws(TemplateError) -> Value {
        try a.check(["d", "attribute"])
        let separator = a[0, "d"]?.str ?? ""
        var items = try i.iterate(v)
        if let attribute = a[1, "attribute"] {
            var mapped: [Value] = []
            for item in items { mapped.append(try attributePath(i, item, attribute)) }
            items = mapped
        }
        var out = ""
        for (k, item) in items.enumerated() {
            if k > 0 { out += separator }
            out += item.str
            try i.checkSize(out.utf8.count, "a joined string")
        }
        return .string(out)
    }

    static func replace(_ i: Interpreter, _ v: Value, _ a: CallArguments) throws(TemplateError) -> Value {
        try a.check(["old", "new", "count"])
        guard let old = a[0, "old"], let new = a[1, "new"] else {
            throw TemplateError(.type, "replace() needs 'old' and 'new'")
        }
        var count = -1
        if let c = a[2, "count"], case .int(let n)? = c.number { count = n }
        return .string(try checkedReplace(i, v.str, old.str, new.str, count: count))
    }

    static func items(_ i: Interpreter, _ v: Value, _ a: CallArguments) throws(TemplateError) -> Value {
        try a.check([])
        switch v {
        case .undefined(let u) where !u.isUnsafe: return .list([])
        case .dict(let d): return .list(d.pairs.map { .tuple([.string($0.0), $0.1]) })
        default: throw TemplateError(.type, "can only get item pairs from a mapping, not \(v.typeName)")
        }
    }

    static func list(_ i: Interpreter, _ v: Value, _ a: CallArguments) throws(TemplateError) -> Value {
        try a.check([])
        return .list(try i.iterate(v))
    }

    static func first(_ i: Interpreter, _ v: Value, _ a: CallArguments) throws(TemplateError) -> Value {
        try a.check([])
        return try i.iterate(v).first ?? .undefined(Undefined(hint: "No first item, sequence was empty."))
    }

    static func last(_ i: Interpreter, _ v: Value, _ a: CallArguments) throws(TemplateError) -> Value {
        try a.check([])
        return try i.iterate(v).last ?? .undefined(Undefined(hint: "No last item, sequence was empty."))
    }

    static func int(_ i: Interpreter, _ v: Value, _ a: CallArguments) throws(TemplateError) -> Value {
        try a.check(["default", "base"])
        let fallback = a[0, "default"] ?? .int(0)
        let base = try a.int(1, "base", default: 10)
        switch v {
        case .bool(let b): return .int(b ? 1 : 0)
        case .int(let n): return .int(n)
        case .double(let d):
            guard d.isFinite, Swift.abs(d) < 9.2e18 else { return fallback }
            return .int(Int(d))
        case .string(let s):
            let t = pythonStrip(s, nil, leading: true, trailing: true).replacingOccurrences(of: "_", with: "")
            if let n = Int(t, radix: base) { return .int(n) }
            if base == 10, let d = Double(t), d.isFinite, Swift.abs(d) < 9.2e18 { return .int(Int(d)) }
            return fallback
        default:
            return fallback
        }
    }

    static func float(_ i: Interpreter, _ v: Value, _ a: CallArguments) throws(TemplateError) -> Value {
        try a.check(["default"])
        let fallback = a[0, "default"] ?? .double(0)
        switch v {
        case .bool(let b): return .double(b ? 1 : 0)
        case .int(let n): return .double(Double(n))
        case .double(let d): return .double(d)
        case .string(let s):
            let t = pythonStrip(s, nil, leading: true, trailing: true).lowercased()
            switch t {
            case "inf", "+inf", "infinity", "+infinity": return .double(.infinity)
            case "-inf", "-infinity": return .double(-.infinity)
            case "nan", "+nan", "-nan": return .double(.nan)
            default: return Double(t.replacingOccurrences(of: "_", with: "")).map(Value.double) ?? fallback
            }
        default:
            return fallback
        }
    }

    static func indent(_ i: Interpreter, _ v: Value, _ a: CallArguments) throws(TemplateError) -> Value {
        try a.check(["width", "first", "blank"])
        let indentation: String
        switch a[0, "width"] {
        case .string(let s)?: indentation = s
        default:
            let width = try a.int(0, "width", default: 4)
            try i.checkSize(width, "an indentation")
            indentation = String(repeating: " ", count: max(0, width))
        }
        let text = v.str + "\n"
        let lines = pythonSplitLines(text)
        try i.checkSize(text.utf8.count + lines.count * indentation.utf8.count, "an indented string")
        var out: String
        if a.bool(2, "blank", default: false) {
            out = lines.joined(separator: "\n" + indentation)
        } else {
            out = lines.first ?? ""
            let rest = lines.dropFirst()
            if !rest.isEmpty {
                out += "\n" + rest.map { $0.isEmpty ? $0 : indentation + $0 }.joined(separator: "\n")
            }
        }
        if a.bool(1, "first", default: false) { out = indentation + out }
        return .string(out)
    }

    static func center(_ i: Interpreter, _ v: Value, _ a: CallArguments) throws(TemplateError) -> Value {
        try a.check(["width"])
        let width = try a.int(0, "width", default: 80)
        try i.checkSize(width, "a centered string")
        let s = v.str
        let n = s.unicodeScalars.count
        guard width > n else { return .string(s) }
        // Python's str.center puts the odd space on the right unless both the width and the length are odd.
        let total = width - n
        let left = total / 2 + (total & width & 1)
        return .string(String(repeating: " ", count: left) + s + String(repeating: " ", count: total - left))
    }

    static func escape(_ i: Interpreter, _ v: Value, _ a: CallArguments) throws(TemplateError) -> Value {
        try a.check([])
        var out = ""
        for c in v.str.unicodeScalars {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&#34;"
            case "'": out += "&#39;"
            default: out.unicodeScalars.append(c)
            }
        }
        return .string(out)
    }

    static func abs(_ i: Interpreter, _ v: Value, _ a: CallArguments) throws(TemplateError) -> Value {
        try a.check([])
        switch v.number {
        case .int(let n)?:
            guard n != .min else { throw TemplateError(.type, "integer overflow") }
            return .int(Swift.abs(n))
        case .double(let d)?: return .double(Swift.abs(d))
        case nil: throw TemplateError(.type, "bad operand type for abs(): '\(v.typeName)'")
        }
    }

    static func round(_ i: Interpreter, _ v: Value, _ a: CallArguments) throws(TemplateError) -> Value {
        try a.check(["precision", "method"])
        let precision = try a.int(0, "precision", default: 0)
        let method = try a.string(1, "method") ?? "common"
        guard let n = v.number else { throw TemplateError(.type, "round(): '\(v.typeName)' is not a number") }
        let scale = pow(10.0, Double(precision))
        let x = n.double * scale
        let rounded: Double
        switch method {
        case "common": rounded = x.rounded(.toNearestOrEven)
        case "floor": rounded = x.rounded(.down)
        case "ceil": rounded = x.rounded(.up)
        default: throw TemplateError(.type, "method must be 'common', 'ceil' or 'floor'")
        }
        return .double(rounded / scale)
    }

    static func reverse(_ i: Interpreter, _ v: Value, _ a: CallArguments) throws(TemplateError) -> Value {
        try a.check([])
        if case .string(let s) = v { return .string(String(scalars: s.unicodeScalars.reversed())) }
        return .list(try i.iterate(v).reversed())
    }

    /// The sort key: the attribute if asked, strings lowered unless case-sensitive.
    private static func sortKey(_ i: Interpreter, _ v: Value, _ attribute: Value?, caseSensitive: Bool)
        throws(TemplateError) -> Value {
        var key = v
        if let attribute { key = try attributePath(i, v, attribute) }
        if !caseSensitive, case .string(let s) = key { key = .string(s.lowercased()) }
        return key
    }

    static func sort(_ i: Interpreter, _ v: Value, _ a: CallArguments) throws(TemplateError) -> Value {
        try a.check(["reverse", "case_sensitive", "attribute"])
        let items = try i.iterate(v)
        var keyed: [(Value, Value)] = []
        for item in items {
            keyed.append((try sortKey(i, item, a[2, "attribute"], caseSensitive: a.bool(1, "case_sensitive", default: false)), item))
        }
        let reverse = a.bool(0, "reverse", default: false)
        var failure: TemplateError? = nil
        // Python's sort is stable; so is this insertion of a stable merge via indices.
        let order = keyed.indices.sorted { x, y in
            do throws(TemplateError) {
                let c = try pythonCompare(keyed[x].0, keyed[y].0, "<")
                return c == 0 ? x < y : (reverse ? c > 0 : c < 0)
            } catch {
                failure = error
                return x < y
            }
        }
        if let failure { throw failure }
        return .list(order.map { keyed[$0].1 })
    }

    static func unique(_ i: Interpreter, _ v: Value, _ a: CallArguments) throws(TemplateError) -> Value {
        try a.check(["case_sensitive", "attribute"])
        var seen: [Value] = []
        var out: [Value] = []
        for item in try i.iterate(v) {
            let key = try sortKey(i, item, a[1, "attribute"], caseSensitive: a.bool(0, "case_sensitive", default: false))
            if !seen.contains(where: { pythonEquals($0, key) }) {
                seen.append(key)
                out.append(item)
            }
        }
        return .list(out)
    }

    static func extreme(_ i: Interpreter, _ v: Value, _ a: CallArguments, largest: Bool) throws(TemplateError) -> Value {
        try a.check(["case_sensitive", "attribute"])
        var best: (Value, Value)? = nil
        for item in try i.iterate(v) {
            let key = try sortKey(i, item, a[1, "attribute"], caseSensitive: a.bool(0, "case_sensitive", default: false))
            if let current = best {
                let c = try pythonCompare(key, current.0, largest ? ">" : "<")
                if largest ? c > 0 : c < 0 { best = (key, item) }
            } else {
                best = (key, item)
            }
        }
        return best?.1 ?? .undefined(Undefined(hint: "No \(largest ? "largest" : "smallest") item, sequence was empty."))
    }

    static func sum(_ i: Interpreter, _ v: Value, _ a: CallArguments) throws(TemplateError) -> Value {
        try a.check(["attribute", "start"])
        var total = a[1, "start"] ?? .int(0)
        for item in try i.iterate(v) {
            let x = try a[0, "attribute"].map { (attr) throws(TemplateError) in try attributePath(i, item, attr) } ?? item
            total = try i.binary(.add, total, x)
        }
        return total
    }

    static func dictsort(_ i: Interpreter, _ v: Value, _ a: CallArguments) throws(TemplateError) -> Value {
        try a.check(["case_sensitive", "by", "reverse"])
        guard case .dict(let d) = v else { throw TemplateError(.type, "dictsort(): expected a mapping, not \(v.typeName)") }
        let byValue = try a.string(1, "by") == "value"
        let pairs = Value.list(d.pairs.map { .tuple([.string($0.0), $0.1]) })
        let sorted = try sort(i, pairs, CallArguments(callee: "dictsort", positional: [],
            keyword: [("reverse", .bool(a.bool(2, "reverse", default: false))),
                      ("case_sensitive", .bool(a.bool(0, "case_sensitive", default: false))),
                      ("attribute", .int(byValue ? 1 : 0))]))
        return sorted
    }

    /// `map(attribute='x', default=...)` or `map('filter', args...)`.
    static func map(_ i: Interpreter, _ v: Value, _ a: CallArguments) throws(TemplateError) -> Value {
        let items = try i.iterate(v)
        if let attribute = a.keyword.first(where: { $0.0 == "attribute" })?.1 {
            for (key, _) in a.keyword where key != "attribute" && key != "default" {
                throw TemplateError(.type, "map() got an unexpected keyword argument '\(key)'")
            }
            let fallback = a.keyword.first { $0.0 == "default" }?.1
            var out: [Value] = []
            for item in items {
                let value = try attributePath(i, item, attribute)
                if value.isUndefined, let fallback { out.append(fallback) } else { out.append(value) }
            }
            return .list(out)
        }
        guard case .string(let name)? = a.positional.first else {
            throw TemplateError(.type, "map() needs a filter name or attribute=")
        }
        guard let filter = table[name] else { throw TemplateError(.unsupported, "unknown filter '\(name)' in map()") }
        let rest = CallArguments(callee: name, positional: Array(a.positional.dropFirst()), keyword: a.keyword)
        var out: [Value] = []
        for item in items { out.append(try filter(i, item, rest)) }
        return .list(out)
    }

    /// `select('test', args)` / `selectattr('attr', 'test', args)` and their `reject` twins; no test: truthiness.
    static func select(_ i: Interpreter, _ v: Value, _ a: CallArguments, attribute: Bool, keep: Bool)
        throws(TemplateError) -> Value {
        var args = a.positional
        var attributeName: Value? = nil
        if attribute {
            guard !args.isEmpty else { throw TemplateError(.type, "\(a.callee)() needs an attribute name") }
            attributeName = args.removeFirst()
        }
        var testName: String? = nil
        if !args.isEmpty {
            guard case .string(let name) = args.removeFirst() else {
                throw TemplateError(.type, "\(a.callee)(): the test name must be a string")
            }
            guard Tests.table[name] != nil else { throw TemplateError(.unsupported, "unknown test '\(name)'") }
            testName = name
        }
        var out: [Value] = []
        for item in try i.iterate(v) {
            let subject = try attributeName.map { (attr) throws(TemplateError) in try attributePath(i, item, attr) } ?? item
            let passed: Bool
            if let testName {
                passed = try i.applyTest(testName, subject, args, a.keyword)
            } else {
                passed = subject.isTruthy
            }
            if passed == keep { out.append(item) }
        }
        return .list(out)
    }

    /// Jinja's attribute getter for filters: `"a.b.0"` walks items (dict keys first), integers index.
    static func attributePath(_ i: Interpreter, _ v: Value, _ attribute: Value) throws(TemplateError) -> Value {
        if case .int = attribute { return try i.item(of: v, attribute) }
        var current = v
        for part in attribute.str.split(separator: ".", omittingEmptySubsequences: false) {
            let key: Value = Int(part).map(Value.int) ?? .string(String(part))
            if current.isUndefined { return current }
            current = try i.item(of: current, key)
        }
        return current
    }

    static func checkedReplace(_ i: Interpreter, _ s: String, _ old: String, _ new: String, count: Int)
        throws(TemplateError) -> String {
        let hits = old.isEmpty ? s.unicodeScalars.count + 1
            : utf8Occurrences(Array(s.utf8), Array(old.utf8), limit: count < 0 ? .max : count).count
        let (grow, overflow) = min(hits, count < 0 ? .max : count).multipliedReportingOverflow(by: new.utf8.count)
        try i.checkSize(overflow ? .max : s.utf8.count + grow, "a replaced string")
        return pythonReplace(s, old, new, count: count)
    }
}

extension Interpreter {
    func applyFilter(_ name: String, _ value: Value, _ arguments: ([Value], [(String, Value)])) throws(TemplateError) -> Value {
        guard let filter = Filters.table[name] else { throw TemplateError(.unsupported, "unknown filter '\(name)'") }
        if case .undefined(let u) = value, u.isUnsafe { throw undefinedError(value) }
        return try filter(self, value, CallArguments(callee: name, positional: arguments.0, keyword: arguments.1))
    }
}
