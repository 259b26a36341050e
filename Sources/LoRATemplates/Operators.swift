// Arithmetic and comparison with Python's semantics: `+` on numbers, strings, lists and tuples; `*` repeats
// sequences; `/` is true division, `//` and `%` floor (the sign follows the divisor); `**`; `in` is substring,
// membership or key test. Integer overflow (Python has big integers) and results past the size bound are errors.
import Foundation

extension Interpreter {
    func unary(_ op: UnaryOperator, _ value: Value) throws(TemplateError) -> Value {
        if value.isUndefined { throw undefinedError(value) }
        guard let n = value.number else {
            throw TemplateError(.type, "bad operand type for unary \(op.rawValue): '\(value.typeName)'")
        }
        switch (op, n) {
        case (.plus, .int(let i)): return .int(i)
        case (.plus, .double(let d)): return .double(d)
        case (.negate, .int(let i)):
            guard i != .min else { throw TemplateError(.type, "integer overflow") }
            return .int(-i)
        case (.negate, .double(let d)): return .double(-d)
        }
    }

    func binary(_ op: BinaryOperator, _ a: Value, _ b: Value) throws(TemplateError) -> Value {
        if a.isUndefined { throw undefinedError(a) }
        if b.isUndefined { throw undefinedError(b) }
        if let x = a.number, let y = b.number { return try arithmetic(op, x, y) }
        switch (op, a, b) {
        case (.add, .string(let x), .string(let y)):
            try checkSize(x.utf8.count + y.utf8.count, "a string")
            return .string(x + y)
        case (.add, .list(let x), .list(let y)):
            try checkLength(x.count + y.count, "a list")
            return .list(x + y)
        case (.add, .tuple(let x), .tuple(let y)):
            try checkLength(x.count + y.count, "a tuple")
            return .tuple(x + y)
        case (.multiply, _, _):
            if let repeated = try repeatSequence(a, b) { return repeated }
            if let repeated = try repeatSequence(b, a) { return repeated }
        case (.modulo, .string, _):
            throw TemplateError(.unsupported, "'%' string formatting is not supported")
        default:
            break
        }
        throw TemplateError(.type, "unsupported operand type(s) for \(op.rawValue): '\(a.typeName)' and '\(b.typeName)'")
    }

    private func repeatSequence(_ sequence: Value, _ count: Value) throws(TemplateError) -> Value? {
        // A bool counts as 0 or 1 here too ('ab' * True is 'ab').
        guard case .int(let n)? = count.number else { return nil }
        let times = max(0, n)
        switch sequence {
        case .string(let s):
            let (size, overflow) = s.utf8.count.multipliedReportingOverflow(by: times)
            try checkSize(overflow ? .max : size, "a string")
            return .string(String(repeating: s, count: times))
        case .list(let items), .tuple(let items):
            let (size, overflow) = items.count.multipliedReportingOverflow(by: times)
            try checkLength(overflow ? .max : size, "a list")
            let repeated = Array([[Value]](repeating: items, count: times).joined())
            if case .tuple = sequence { return .tuple(repeated) }
            return .list(repeated)
        default:
            return nil
        }
    }

    private func arithmetic(_ op: BinaryOperator, _ x: Number, _ y: Number) throws(TemplateError) -> Value {
        if case .int(let i) = x, case .int(let j) = y {
            func checked(_ r: (partialValue: Int, overflow: Bool)) throws(TemplateError) -> Value {
                if r.overflow { throw TemplateError(.type, "integer overflow (Python integers are unbounded; this engine's are 64-bit)") }
                return .int(r.partialValue)
            }
            switch op {
            case .add: return try checked(i.addingReportingOverflow(j))
            case .subtract: return try checked(i.subtractingReportingOverflow(j))
            case .multiply: return try checked(i.multipliedReportingOverflow(by: j))
            case .divide:
                guard j != 0 else { throw TemplateError(.type, "division by zero") }
                return .double(Double(i) / Double(j))
            case .floorDivide, .modulo:
                guard j != 0 else { throw TemplateError(.type, "integer division or modulo by zero") }
                if i == .min && j == -1 { throw TemplateError(.type, "integer overflow") }
                var q = i / j, r = i % j
                if r != 0 && ((r < 0) != (j < 0)) { q -= 1; r += j }
                return .int(op == .floorDivide ? q : r)
            case .power:
                if j < 0 { return .double(pow(Double(i), Double(j))) }
                var result = 1, base = i, e = j
                while e > 0 {
                    if e & 1 == 1 { result = try checked(result.multipliedReportingOverflow(by: base)).intValue }
                    e >>= 1
                    if e > 0 { base = try checked(base.multipliedReportingOverflow(by: base)).intValue }
                }
                return .int(result)
            }
        }
        let (p, q) = (x.double, y.double)
        switch op {
        case .add: return .double(p + q)
        case .subtract: return .double(p - q)
        case .multiply: return .double(p * q)
        case .divide:
            guard q != 0 else { throw TemplateError(.type, "float division by zero") }
            return .double(p / q)
        case .floorDivide, .modulo:
            guard q != 0 else { throw TemplateError(.type, "float modulo") }
            var r = fmod(p, q)
            if r != 0 && ((r < 0) != (q < 0)) { r += q }
            if op == .modulo { return .double(r) }
            return .double(((p - r) / q).rounded())
        case .power:
            return .double(pow(p, q))
        }
    }

    func compare(_ op: CompareOperator, _ a: Value, _ b: Value) throws(TemplateError) -> Bool {
        switch op {
        case .equal: return pythonEquals(a, b)
        case .notEqual: return !pythonEquals(a, b)
        case .less: return try pythonCompare(a, b, "<") < 0
        case .lessEqual: return try pythonCompare(a, b, "<=") <= 0
        case .greater: return try pythonCompare(a, b, ">") > 0
        case .greaterEqual: return try pythonCompare(a, b, ">=") >= 0
        case .contains: return try contains(b, a)
        case .notContains: return try !contains(b, a)
        }
    }

    /// Python's `needle in container`.
    func contains(_ container: Value, _ needle: Value) throws(TemplateError) -> Bool {
        switch container {
        case .string(let s):
            guard case .string(let n) = needle else {
                if needle.isUndefined { throw undefinedError(needle) }
                throw TemplateError(.type, "'in <string>' requires string as left operand, not \(needle.typeName)")
            }
            return n.isEmpty || !utf8Occurrences(Array(s.utf8), Array(n.utf8), limit: 1).isEmpty
        case .list(let items), .tuple(let items):
            return items.contains { pythonEquals($0, needle) }
        case .dict(let d):
            if case .string(let k) = needle { return d[k] != nil }
            return false
        case .undefined(let u) where !u.isUnsafe:
            return false
        case .undefined:
            throw undefinedError(container)
        default:
            throw TemplateError(.type, "argument of type '\(container.typeName)' is not iterable")
        }
    }
}

extension Value {
    fileprivate var intValue: Int { if case .int(let i) = self { i } else { 0 } }
}
