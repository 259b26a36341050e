// Runtime values of the interpreter and the Python semantics Jinja inherits: what `{{ x }}` prints (`str()`),
// how a value prints inside a list (`repr()`), truthiness, equality (`1 == 1.0 == True`, dicts order-free),
// ordering. Lists and dicts are values (copied on write); namespaces are shared objects, as in Python.

/// A Python dict with string keys: insertion order kept, an existing key keeps its place when set.
struct OrderedDict: Equatable {
    private(set) var keys: [String] = []
    private var storage: [String: Value] = [:]

    init() {}
    init(_ pairs: [(String, Value)]) { for (k, v) in pairs { self[k] = v } }

    var count: Int { keys.count }
    subscript(key: String) -> Value? {
        get { storage[key] }
        set {
            if let newValue {
                if storage.updateValue(newValue, forKey: key) == nil { keys.append(key) }
            } else if storage.removeValue(forKey: key) != nil {
                keys.removeAll { $0 == key }
            }
        }
    }
    var pairs: [(String, Value)] { keys.map { ($0, storage[$0]!) } }
    var values: [Value] { keys.map { storage[$0]! } }

    static func == (a: OrderedDict, b: OrderedDict) -> Bool {
        guard a.count == b.count else { return false }
        for (k, v) in a.storage {
            guard let w = b.storage[k], pythonEquals(v, w) else { return false }
        }
        return true
    }
}

/// `namespace(...)`: the one mutable object templates can share across loop scopes.
final class Namespace {
    var attributes: OrderedDict
    init(_ attributes: OrderedDict) { self.attributes = attributes }
}

/// A macro bound to the scope it was defined in (it sees that scope's later assignments, as Jinja's do).
final class Macro {
    let definition: MacroDefinition
    let closure: Scope
    init(_ definition: MacroDefinition, closure: Scope) {
        self.definition = definition
        self.closure = closure
    }
}

/// The `loop` variable of one `{% for %}` iteration; its attributes are computed when read.
final class LoopInfo {
    let index: Int
    let items: [Value]
    init(index: Int, items: [Value]) {
        self.index = index
        self.items = items
    }

    func attribute(_ name: String) -> Value? {
        let length = items.count
        switch name {
        case "index": return .int(index + 1)
        case "index0": return .int(index)
        case "revindex": return .int(length - index)
        case "revindex0": return .int(length - index - 1)
        case "first": return .bool(index == 0)
        case "last": return .bool(index == length - 1)
        case "length": return .int(length)
        case "depth": return .int(1)
        case "depth0": return .int(0)
        case "previtem": return index > 0 ? items[index - 1] : .undefined(Undefined(hint: "there is no previous item"))
        case "nextitem": return index + 1 < length ? items[index + 1] : .undefined(Undefined(hint: "there is no next item"))
        case "cycle":
            let index = index
            return .function(Function(name: "cycle") { _, args, _ throws(TemplateError) in
                guard !args.isEmpty else { throw TemplateError(.type, "no items for cycling given") }
                return args[index % args.count]
            })
        default: return nil
        }
    }
}

/// A global function or a bound method (`'a b'.split`, `d.get`).
struct Function {
    typealias Body = (Interpreter, [Value], [(String, Value)]) throws(TemplateError) -> Value
    let name: String
    let body: Body
}

/// Why a value is undefined, for the error raised when it is used as a value.
struct Undefined {
    let hint: String
    /// Set for an attribute the sandbox refuses (`x.append`): using it raises a security error, not an undefined one.
    var isUnsafe = false
    static func name(_ name: String) -> Undefined { Undefined(hint: "'\(name)' is undefined") }
    static func unsafe(_ owner: Value, _ name: String) -> Undefined {
        Undefined(hint: "access to attribute '\(name)' of '\(owner.typeName)' object is unsafe", isUnsafe: true)
    }
    static func attribute(_ owner: Value, _ name: String) -> Undefined {
        Undefined(hint: "'\(owner.typeName) object' has no attribute '\(name)'")
    }
    static func item(_ owner: Value, _ key: Value) -> Undefined {
        Undefined(hint: "'\(owner.typeName) object' has no element \(key.repr)")
    }
}

enum Value {
    case undefined(Undefined)
    case none
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case list([Value])
    case tuple([Value])
    case dict(OrderedDict)
    case namespace(Namespace)
    case macro(Macro)
    case function(Function)
    case loop(LoopInfo)

    init(_ value: TemplateValue) {
        switch value {
        case .null: self = .none
        case .bool(let b): self = .bool(b)
        case .int(let i): self = .int(i)
        case .double(let d): self = .double(d)
        case .string(let s): self = .string(s)
        case .array(let a): self = .list(a.map(Value.init))
        case .object(let o): self = .dict(OrderedDict(o.map { ($0.key, Value($0.value)) }))
        }
    }

    /// Python's type name, as error messages say it.
    var typeName: String {
        switch self {
        case .undefined: "Undefined"
        case .none: "NoneType"
        case .bool: "bool"
        case .int: "int"
        case .double: "float"
        case .string: "str"
        case .list: "list"
        case .tuple: "tuple"
        case .dict: "dict"
        case .namespace: "Namespace"
        case .macro: "Macro"
        case .function: "builtin_function_or_method"
        case .loop: "LoopContext"
        }
    }

    var isUndefined: Bool { if case .undefined = self { true } else { false } }

    /// Python's truth value (undefined is false).
    var isTruthy: Bool {
        switch self {
        case .undefined, .none: false
        case .bool(let b): b
        case .int(let i): i != 0
        case .double(let d): d != 0
        case .string(let s): !s.isEmpty
        case .list(let a), .tuple(let a): !a.isEmpty
        case .dict(let d): d.count > 0
        case .namespace, .macro, .function, .loop: true
        }
    }

    /// A number as Python sees it in arithmetic (bool is an int).
    var number: Number? {
        switch self {
        case .bool(let b): .int(b ? 1 : 0)
        case .int(let i): .int(i)
        case .double(let d): .double(d)
        default: nil
        }
    }

    /// `str(value)`: what `{{ value }}` prints. Undefined prints nothing.
    var str: String {
        switch self {
        case .undefined: ""
        case .string(let s): s
        default: repr
        }
    }

    /// `repr(value)`: how the value prints inside a list or dict.
    var repr: String {
        switch self {
        case .undefined: "Undefined"
        case .none: "None"
        case .bool(let b): b ? "True" : "False"
        case .int(let i): String(i)
        case .double(let d): pythonFloatRepr(d)
        case .string(let s): pythonStringRepr(s)
        case .list(let a): "[" + a.map(\.repr).joined(separator: ", ") + "]"
        case .tuple(let a): a.count == 1 ? "(" + a[0].repr + ",)" : "(" + a.map(\.repr).joined(separator: ", ") + ")"
        case .dict(let d): "{" + d.pairs.map { pythonStringRepr($0.0) + ": " + $0.1.repr }.joined(separator: ", ") + "}"
        case .namespace(let n): "<Namespace " + Value.dict(n.attributes).repr + ">"
        case .macro(let m): "<Macro '\(m.definition.name)'>"
        case .function(let f): "<built-in function \(f.name)>"
        case .loop(let l): "<LoopContext \(l.index + 1)/\(l.items.count)>"
        }
    }
}

enum Number {
    case int(Int)
    case double(Double)
    var double: Double {
        switch self {
        case .int(let i): Double(i)
        case .double(let d): d
        }
    }
}

/// Python's `==`: numbers across int/float/bool, sequences elementwise (a tuple never equals a list), dicts as maps,
/// namespaces by identity, undefined equal to undefined.
func pythonEquals(_ a: Value, _ b: Value) -> Bool {
    if let x = a.number, let y = b.number {
        switch (x, y) {
        case (.int(let i), .int(let j)): return i == j
        default: return x.double == y.double
        }
    }
    switch (a, b) {
    case (.undefined, .undefined), (.none, .none): return true
    case (.string(let x), .string(let y)): return x.unicodeScalars.elementsEqual(y.unicodeScalars)
    case (.list(let x), .list(let y)), (.tuple(let x), .tuple(let y)):
        return x.count == y.count && zip(x, y).allSatisfy { pythonEquals($0, $1) }
    case (.dict(let x), .dict(let y)): return x == y
    case (.namespace(let x), .namespace(let y)): return x === y
    case (.macro(let x), .macro(let y)): return x === y
    case (.loop(let x), .loop(let y)): return x === y
    default: return false
    }
}

/// Python's ordering for `<` and friends and for `sort`: numbers, strings by code point, sequences
/// lexicographically; anything else is a TypeError.
func pythonCompare(_ a: Value, _ b: Value, _ op: String) throws(TemplateError) -> Int {
    if let x = a.number, let y = b.number {
        if case .int(let i) = x, case .int(let j) = y { return i < j ? -1 : (i == j ? 0 : 1) }
        let (p, q) = (x.double, y.double)
        return p < q ? -1 : (p == q ? 0 : 1)
    }
    switch (a, b) {
    case (.string(let x), .string(let y)):
        var i = x.unicodeScalars.makeIterator(), j = y.unicodeScalars.makeIterator()
        while true {
            switch (i.next(), j.next()) {
            case (nil, nil): return 0
            case (nil, _): return -1
            case (_, nil): return 1
            case (let p?, let q?): if p != q { return p.value < q.value ? -1 : 1 }
            }
        }
    case (.list(let x), .list(let y)), (.tuple(let x), .tuple(let y)):
        for (p, q) in zip(x, y) where !pythonEquals(p, q) { return try pythonCompare(p, q, op) }
        return x.count < y.count ? -1 : (x.count == y.count ? 0 : 1)
    default:
        if a.isUndefined || b.isUndefined { throw undefinedError(a.isUndefined ? a : b) }
        throw TemplateError(.type, "'\(op)' not supported between instances of '\(a.typeName)' and '\(b.typeName)'")
    }
}

/// The error for using an undefined value as a value.
func undefinedError(_ value: Value) -> TemplateError {
    if case .undefined(let u) = value { return TemplateError(u.isUnsafe ? .security : .undefined, u.hint) }
    return TemplateError(.undefined, "value is undefined")
}
