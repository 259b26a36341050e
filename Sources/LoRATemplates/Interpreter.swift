// Walks the syntax tree. Scoping follows Jinja's: `{% if %}` shares its scope, every `{% for %}` iteration gets a
// fresh child scope (so `{% set %}` in a loop never leaks out or into the next iteration; `namespace()` is how
// templates carry values across), macro calls get a child of the scope they were defined in, `{% set %}` at the top
// level writes the template's own scope (above it: the render context, above that: the globals).
// Output goes to a stack of buffers: the root is what the template renders; macros, `{% set %}` blocks and
// `{% generation %}` bodies capture into their own. A generation span starts at the root's length when the block
// ends, as transformers' AssistantTracker records it, in code points and UTF-8 bytes.
// Hostile input is bounded by `TemplateLimits`: evaluation depth, loop iterations, evaluation steps, macro recursion,
// output and string sizes; every bound reached is a `.limit` error, never a crash or a hang.

final class Scope {
    var variables: [String: Value] = [:]
    let parent: Scope?
    init(parent: Scope?) { self.parent = parent }

    func lookup(_ name: String) -> Value? {
        var scope: Scope? = self
        while let s = scope {
            if let v = s.variables[name] { return v }
            scope = s.parent
        }
        return nil
    }
}

/// What a statement list asks of the loop around it.
enum Flow { case normal, breakLoop, continueLoop }

struct OutputBuffer {
    var text = ""
    var scalarCount = 0
}

final class Interpreter {
    let limits: TemplateLimits
    private(set) var buffers = [OutputBuffer()]
    /// Generation spans: (code point range, UTF-8 byte range) in the root output.
    private(set) var spans: [(scalars: Range<Int>, utf8: Range<Int>)] = []
    private var depth = 0
    private var steps = 0
    private var iterations = 0
    private var macroDepth = 0

    init(limits: TemplateLimits) { self.limits = limits }

    // MARK: - Bounds

    private func enter() throws(TemplateError) {
        depth += 1
        steps += 1
        if depth > limits.maxDepth {
            throw TemplateError(.limit, "evaluation nested deeper than \(limits.maxDepth) levels")
        }
        if steps > limits.maxSteps {
            throw TemplateError(.limit, "rendering took more than \(limits.maxSteps) evaluation steps")
        }
        try StackGuard.check()
    }

    /// Throws when a string about to be built would pass the size bound (bytes).
    func checkSize(_ size: Int, _ what: String) throws(TemplateError) {
        if size > limits.maxOutputBytes {
            throw TemplateError(.limit, "\(what) would be \(size) bytes long, over the limit of \(limits.maxOutputBytes)")
        }
    }

    /// Throws when a list about to be built would pass the length bound (items).
    func checkLength(_ count: Int, _ what: String) throws(TemplateError) {
        if count > limits.maxListLength {
            throw TemplateError(.limit, "\(what) would have \(count) items, over the limit of \(limits.maxListLength)")
        }
    }

    func countIteration() throws(TemplateError) {
        iterations += 1
        if iterations > limits.maxLoopIterations {
            throw TemplateError(.limit, "loops ran more than \(limits.maxLoopIterations) iterations")
        }
    }

    // MARK: - Output

    private func write(_ s: String) throws(TemplateError) {
        if s.isEmpty { return }
        let i = buffers.count - 1
        buffers[i].text += s
        buffers[i].scalarCount += s.unicodeScalars.count
        if buffers[i].text.utf8.count > limits.maxOutputBytes {
            throw TemplateError(.limit, "output is over the limit of \(limits.maxOutputBytes) bytes")
        }
    }

    private func capture(_ body: () throws(TemplateError) -> Void) throws(TemplateError) -> String {
        buffers.append(OutputBuffer())
        defer { buffers.removeLast() }
        try body()
        return buffers[buffers.count - 1].text
    }

    /// The rendered root text.
    var output: String { buffers[0].text }

    // MARK: - Statements

    func execute(_ statements: [Stmt], _ scope: Scope) throws(TemplateError) -> Flow {
        for statement in statements {
            let flow: Flow
            do {
                flow = try execute(statement, scope)
            } catch {
                throw error.located(statement.position)
            }
            if flow != .normal { return flow }
        }
        return .normal
    }

    private func execute(_ statement: Stmt, _ scope: Scope) throws(TemplateError) -> Flow {
        try enter()
        defer { depth -= 1 }
        switch statement.kind {
        case .text(let text):
            try write(text)
        case .output(let expr):
            try write(try evaluate(expr, scope).str)
        case .ifChain(let branches, let otherwise):
            for (test, body) in branches where try evaluate(test, scope).isTruthy {
                return try execute(body, scope)
            }
            return try execute(otherwise, scope)
        case .forLoop(let target, let iterable, let filter, let body, let otherwise):
            return try executeFor(target, iterable, filter, body, otherwise, scope)
        case .set(let target, let expr):
            try assign(target, try evaluate(expr, scope), scope)
        case .setBlock(let target, let filters, let body):
            let inner = Scope(parent: scope)
            var value = Value.string(try capture { () throws(TemplateError) in _ = try execute(body, inner) })
            for (name, arguments, position) in filters {
                do {
                    value = try applyFilter(name, value, try evaluate(arguments, scope))
                } catch {
                    throw error.located(position)
                }
            }
            try assign(target, value, scope)
        case .macro(let definition):
            scope.variables[definition.name] = .macro(Macro(definition, closure: scope))
        case .breakLoop:
            return .breakLoop
        case .continueLoop:
            return .continueLoop
        case .generation(let body):
            let inner = Scope(parent: scope)
            var flow = Flow.normal
            let text = try capture { () throws(TemplateError) in flow = try execute(body, inner) }
            let root = buffers[0]
            let scalarStart = root.scalarCount, utf8Start = root.text.utf8.count
            try write(text)
            spans.append((scalarStart..<scalarStart + text.unicodeScalars.count,
                          utf8Start..<utf8Start + text.utf8.count))
            return flow
        }
        return .normal
    }

    private func executeFor(_ target: AssignTarget, _ iterable: Expr, _ filter: Expr?, _ body: [Stmt],
                            _ otherwise: [Stmt], _ scope: Scope) throws(TemplateError) -> Flow {
        var items = try iterate(try evaluate(iterable, scope))
        if let filter {
            var kept: [Value] = []
            for item in items {
                try countIteration()
                let testScope = Scope(parent: scope)
                try assign(target, item, testScope)
                if try evaluate(filter, testScope).isTruthy { kept.append(item) }
            }
            items = kept
        }
        if items.isEmpty {
            return try execute(otherwise, Scope(parent: scope))
        }
        for (index, item) in items.enumerated() {
            try countIteration()
            let inner = Scope(parent: scope)
            try assign(target, item, inner)
            inner.variables["loop"] = .loop(LoopInfo(index: index, items: items))
            if try execute(body, inner) == .breakLoop { break }
        }
        return .normal
    }

    private func assign(_ target: AssignTarget, _ value: Value, _ scope: Scope) throws(TemplateError) {
        switch target {
        case .name(let name):
            scope.variables[name] = value
        case .tuple(let targets):
            let items = try iterate(value)
            guard items.count == targets.count else {
                throw TemplateError(.type, items.count > targets.count
                    ? "too many values to unpack (expected \(targets.count))"
                    : "not enough values to unpack (expected \(targets.count), got \(items.count))")
            }
            for (t, v) in zip(targets, items) { try assign(t, v, scope) }
        case .namespaceAttribute(let name, let attribute):
            guard case .namespace(let namespace)? = scope.lookup(name) else {
                throw TemplateError(.type, "cannot assign attribute on non-namespace object '\(name)'")
            }
            if attribute.hasPrefix("_") {
                throw TemplateError(.security, "chat templates cannot store underscore-prefixed attributes on a namespace, but got '\(attribute)'")
            }
            namespace.attributes[attribute] = value
        }
    }

    // MARK: - Expressions

    func evaluate(_ expr: Expr, _ scope: Scope) throws(TemplateError) -> Value {
        try enter()
        defer { depth -= 1 }
        do {
            return try evaluateKind(expr, scope)
        } catch {
            throw error.located(expr.position)
        }
    }

    private func evaluateKind(_ expr: Expr, _ scope: Scope) throws(TemplateError) -> Value {
        switch expr.kind {
        case .constant(let c):
            switch c {
            case .none: return .none
            case .bool(let b): return .bool(b)
            case .int(let i): return .int(i)
            case .double(let d): return .double(d)
            case .string(let s): return .string(s)
            }
        case .name(let name):
            return scope.lookup(name) ?? .undefined(.name(name))
        case .list(let items):
            var values: [Value] = []
            for item in items { values.append(try evaluate(item, scope)) }
            return .list(values)
        case .tuple(let items):
            var values: [Value] = []
            for item in items { values.append(try evaluate(item, scope)) }
            return .tuple(values)
        case .dict(let items):
            var dict = OrderedDict()
            for (k, v) in items {
                let key = try evaluate(k, scope)
                guard case .string(let s) = key else {
                    throw TemplateError(.unsupported, "dict keys other than strings are not supported (got \(key.typeName))")
                }
                dict[s] = try evaluate(v, scope)
            }
            return .dict(dict)
        case .attribute(let object, let name):
            return try attribute(of: try evaluate(object, scope), name)
        case .item(let object, let key):
            return try item(of: try evaluate(object, scope), try evaluate(key, scope))
        case .slice(let object, let start, let stop, let step):
            let base = try evaluate(object, scope)
            let s = try start.map { (e) throws(TemplateError) in try evaluate(e, scope) }
            let e = try stop.map { (e) throws(TemplateError) in try evaluate(e, scope) }
            let st = try step.map { (e) throws(TemplateError) in try evaluate(e, scope) }
            return try slice(base, s, e, st)
        case .call(let callee, let arguments):
            let function = try evaluate(callee, scope)
            let (args, kwargs) = try evaluate(arguments, scope)
            return try call(function, args, kwargs)
        case .filter(let subject, let name, let arguments):
            let value = try evaluate(subject, scope)
            return try applyFilter(name, value, try evaluate(arguments, scope))
        case .test(let subject, let name, let arguments, let negated):
            let value = try evaluate(subject, scope)
            let (args, kwargs) = try evaluate(arguments, scope)
            let result = try applyTest(name, value, args, kwargs)
            return .bool(result != negated)
        case .unary(let op, let operand):
            return try unary(op, try evaluate(operand, scope))
        case .binary(let op, let left, let right):
            return try binary(op, try evaluate(left, scope), try evaluate(right, scope))
        case .and(let left, let right):
            let l = try evaluate(left, scope)
            return l.isTruthy ? try evaluate(right, scope) : l
        case .or(let left, let right):
            let l = try evaluate(left, scope)
            return l.isTruthy ? l : try evaluate(right, scope)
        case .not(let operand):
            return .bool(!(try evaluate(operand, scope)).isTruthy)
        case .compare(let first, let operations):
            var left = try evaluate(first, scope)
            for (op, rightExpr) in operations {
                let right = try evaluate(rightExpr, scope)
                if !(try compare(op, left, right)) { return .bool(false) }
                left = right
            }
            return .bool(true)
        case .concat(let items):
            var text = ""
            for item in items {
                text += try evaluate(item, scope).str
                try checkSize(text.utf8.count, "a string")
            }
            return .string(text)
        case .conditional(let condition, let then, let otherwise):
            if try evaluate(condition, scope).isTruthy { return try evaluate(then, scope) }
            if let otherwise { return try evaluate(otherwise, scope) }
            return .undefined(Undefined(hint: "the inline if-expression on line \(expr.position.line) evaluated to false and no else section was defined"))
        }
    }

    func evaluate(_ arguments: Arguments, _ scope: Scope) throws(TemplateError) -> ([Value], [(String, Value)]) {
        var args: [Value] = []
        for a in arguments.positional { args.append(try evaluate(a, scope)) }
        var kwargs: [(String, Value)] = []
        for (k, a) in arguments.keyword { kwargs.append((k, try evaluate(a, scope))) }
        return (args, kwargs)
    }

    // MARK: - Calls

    func call(_ function: Value, _ args: [Value], _ kwargs: [(String, Value)]) throws(TemplateError) -> Value {
        switch function {
        case .function(let f):
            return try f.body(self, args, kwargs)
        case .macro(let macro):
            return try callMacro(macro, args, kwargs)
        case .undefined:
            throw undefinedError(function)
        default:
            throw TemplateError(.type, "'\(function.typeName)' object is not callable")
        }
    }

    private func callMacro(_ macro: Macro, _ args: [Value], _ kwargs: [(String, Value)]) throws(TemplateError) -> Value {
        let definition = macro.definition
        guard args.count <= definition.parameters.count else {
            throw TemplateError(.type, "macro '\(definition.name)' takes not more than \(definition.parameters.count) argument(s)")
        }
        macroDepth += 1
        defer { macroDepth -= 1 }
        if macroDepth > limits.maxMacroDepth {
            throw TemplateError(.limit, "macro calls nested deeper than \(limits.maxMacroDepth) levels (recursion?)")
        }
        let scope = Scope(parent: macro.closure)
        var remaining = kwargs
        for (i, (name, defaultValue)) in definition.parameters.enumerated() {
            if i < args.count {
                if remaining.contains(where: { $0.0 == name }) {
                    throw TemplateError(.type, "macro '\(definition.name)' got multiple values for argument '\(name)'")
                }
                scope.variables[name] = args[i]
            } else if let k = remaining.firstIndex(where: { $0.0 == name }) {
                scope.variables[name] = remaining.remove(at: k).1
            } else if let defaultValue {
                scope.variables[name] = try evaluate(defaultValue, scope)
            } else {
                scope.variables[name] = .undefined(Undefined(hint: "parameter '\(name)' was not provided"))
            }
        }
        if let (name, _) = remaining.first {
            throw TemplateError(.type, "macro '\(definition.name)' takes no keyword argument '\(name)'")
        }
        let text = try capture { () throws(TemplateError) in _ = try execute(definition.body, scope) }
        return .string(text)
    }

    // MARK: - Access

    /// Items a `for` loop (and `list`, `join`, unpacking) walks: list items, dict keys, string characters;
    /// undefined is empty.
    func iterate(_ value: Value) throws(TemplateError) -> [Value] {
        switch value {
        case .undefined(let u) where u.isUnsafe: throw undefinedError(value)
        case .undefined: return []
        case .list(let a), .tuple(let a): return a
        case .dict(let d): return d.keys.map { .string($0) }
        case .string(let s): return s.unicodeScalars.map { .string(String($0)) }
        default: throw TemplateError(.type, "'\(value.typeName)' object is not iterable")
        }
    }

    /// `object.name`: Python attribute first (methods), then the item, else undefined.
    func attribute(of object: Value, _ name: String) throws(TemplateError) -> Value {
        if case .undefined = object { throw undefinedError(object) }
        if name.hasPrefix("__") { return .undefined(.unsafe(object, name)) }
        if let method = boundMethod(object, name) { return method }
        switch object {
        case .dict(let d):
            return d[name] ?? .undefined(.attribute(object, name))
        case .namespace(let n):
            return n.attributes[name] ?? .undefined(.attribute(object, name))
        case .loop(let l):
            return l.attribute(name) ?? .undefined(.attribute(object, name))
        default:
            return .undefined(.attribute(object, name))
        }
    }

    /// `object[key]`: the item first, then (for a string key) the attribute, else undefined.
    func item(of object: Value, _ key: Value) throws(TemplateError) -> Value {
        if case .undefined = object { throw undefinedError(object) }
        switch (object, key) {
        case (.dict(let d), .string(let k)):
            if let v = d[k] { return v }
        case (.list(let a), _), (.tuple(let a), _):
            if case .int(let i)? = key.number, let v = element(a, i) { return v }
        case (.string(let s), _):
            if case .int(let i)? = key.number, let v = element(s.scalars, i) { return .string(String(v)) }
        case (.namespace(let n), .string(let k)):
            if let v = n.attributes[k] { return v }
        case (.loop(let l), .string(let k)):
            if let v = l.attribute(k) { return v }
        default:
            break
        }
        if case .string(let k) = key {
            if k.hasPrefix("__") { return .undefined(.unsafe(object, k)) }
            if let method = boundMethod(object, k) { return method }
        }
        return .undefined(.item(object, key))
    }

    private func element<T>(_ a: [T], _ i: Int) -> T? {
        let j = i < 0 ? i + a.count : i
        return j >= 0 && j < a.count ? a[j] : nil
    }

    /// Python slicing of a list, tuple or string; anything else is undefined, as in Jinja.
    private func slice(_ object: Value, _ start: Value?, _ stop: Value?, _ step: Value?) throws(TemplateError) -> Value {
        if case .undefined = object { throw undefinedError(object) }
        func bound(_ v: Value?) -> Int?? {
            guard let v else { return .some(nil) }
            if case .none = v { return .some(nil) }
            if case .int(let i)? = v.number { return .some(i) }
            return nil
        }
        guard let startIndex = bound(start), let stopIndex = bound(stop), let stepValue = bound(step) else {
            return .undefined(Undefined(hint: "slice indices must be integers or None"))
        }
        let stride = stepValue ?? 1
        guard stride != 0 else { throw TemplateError(.type, "slice step cannot be zero") }
        func indices(_ count: Int) -> [Int] {
            func clamp(_ i: Int?, _ defaultValue: Int, low: Int, high: Int) -> Int {
                guard var i else { return defaultValue }
                if i < 0 { i += count }
                return min(max(i, low), high)
            }
            var result: [Int] = []
            if stride > 0 {
                var i = clamp(startIndex, 0, low: 0, high: count)
                let end = clamp(stopIndex, count, low: 0, high: count)
                while i < end { result.append(i); i += stride }
            } else {
                var i = clamp(startIndex, count - 1, low: -1, high: count - 1)
                let end = clamp(stopIndex, -1, low: -1, high: count - 1)
                while i > end { result.append(i); i += stride }
            }
            return result
        }
        switch object {
        case .list(let a): return .list(indices(a.count).map { a[$0] })
        case .tuple(let a): return .tuple(indices(a.count).map { a[$0] })
        case .string(let s):
            let a = s.scalars
            return .string(String(scalars: indices(a.count).map { a[$0] }))
        default:
            return .undefined(Undefined(hint: "'\(object.typeName)' object is not subscriptable"))
        }
    }
}
