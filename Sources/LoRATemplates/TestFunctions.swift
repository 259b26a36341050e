// Jinja's tests (`x is defined`, `x is not none`, `n is divisibleby 3`) with Python's type rules: a bool is a
// number but not an integer, undefined is iterable (empty) and a sequence, a string is iterable and a sequence.

typealias TestBody = @Sendable (Interpreter, Value, CallArguments) throws(TemplateError) -> Bool

enum Tests {
    static let table: [String: TestBody] = [
        "defined": { _, v, _ in !v.isUndefined },
        "undefined": { _, v, _ in v.isUndefined },
        "none": { _, v, _ in if case .none = v { true } else { false } },
        "boolean": { _, v, _ in if case .bool = v { true } else { false } },
        "true": { _, v, _ in if case .bool(true) = v { true } else { false } },
        "false": { _, v, _ in if case .bool(false) = v { true } else { false } },
        "integer": { _, v, _ in if case .int = v { true } else { false } },
        "float": { _, v, _ in if case .double = v { true } else { false } },
        "number": { _, v, _ in v.number != nil },
        "string": { _, v, _ in if case .string = v { true } else { false } },
        "mapping": { _, v, _ in if case .dict = v { true } else { false } },
        "iterable": { _, v, _ in
            switch v {
            case .undefined, .string, .list, .tuple, .dict: true
            default: false
            }
        },
        "sequence": { _, v, _ in
            switch v {
            case .undefined, .string, .list, .tuple, .dict: true
            default: false
            }
        },
        "callable": { _, v, _ in
            switch v {
            case .macro, .function: true
            default: false
            }
        },
        "escaped": { _, _, _ in false },
        "odd": { i, v, _ throws(TemplateError) in try i.binary(.modulo, v, .int(2)).isTruthy },
        "even": { i, v, _ throws(TemplateError) in try !i.binary(.modulo, v, .int(2)).isTruthy },
        "divisibleby": { i, v, a throws(TemplateError) in
            try a.check(["num"])
            guard let n = a[0, "num"] else { throw TemplateError(.type, "divisibleby needs a number") }
            return try !i.binary(.modulo, v, n).isTruthy
        },
        "lower": { _, v, _ in
            let s = v.str
            return s.unicodeScalars.contains { $0.properties.isLowercase } && s.lowercased() == s
        },
        "upper": { _, v, _ in
            let s = v.str
            return s.unicodeScalars.contains { $0.properties.isUppercase } && s.uppercased() == s
        },
        "eq": compare(.equal), "equalto": compare(.equal), "==": compare(.equal),
        "ne": compare(.notEqual), "!=": compare(.notEqual),
        "lt": compare(.less), "lessthan": compare(.less), "<": compare(.less),
        "le": compare(.lessEqual), "<=": compare(.lessEqual),
        "gt": compare(.greater), "greaterthan": compare(.greater), ">": compare(.greater),
        "ge": compare(.greaterEqual), ">=": compare(.greaterEqual),
        "in": { i, v, a throws(TemplateError) in
            try a.check(["seq"])
            guard let container = a[0, "seq"] else { throw TemplateError(.type, "'in' test needs a container") }
            return try i.contains(container, v)
        },
        "sameas": { _, v, a throws(TemplateError) in
            try a.check(["other"])
            guard let other = a[0, "other"] else { throw TemplateError(.type, "'sameas' test needs a value") }
            switch (v, other) {
            case (.none, .none): return true
            case (.bool(let x), .bool(let y)): return x == y
            case (.namespace(let x), .namespace(let y)): return x === y
            default: return false
            }
        },
    ]

    private static func compare(_ op: CompareOperator) -> TestBody {
        { i, v, a throws(TemplateError) in
            try a.check(["other"])
            guard let other = a[0, "other"] else { throw TemplateError(.type, "the '\(op.rawValue)' test needs a value") }
            return try i.compare(op, v, other)
        }
    }
}

extension Interpreter {
    func applyTest(_ name: String, _ value: Value, _ args: [Value], _ kwargs: [(String, Value)]) throws(TemplateError) -> Bool {
        guard let test = Tests.table[name] else { throw TemplateError(.unsupported, "unknown test '\(name)'") }
        return try test(self, value, CallArguments(callee: name, positional: args, keyword: kwargs))
    }
}
