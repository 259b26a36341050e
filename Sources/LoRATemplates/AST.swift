// The syntax tree the parser builds and the interpreter walks: statements (text, output, if, for, set, macro,
// generation, break/continue) holding expressions. Every node keeps its source position for error messages.

struct Expr: Sendable {
    indirect enum Kind: Sendable {
        case constant(Constant)
        case name(String)
        case list([Expr])
        case tuple([Expr])
        case dict([(Expr, Expr)])
        case attribute(Expr, String)
        case item(Expr, Expr)
        case slice(Expr, start: Expr?, stop: Expr?, step: Expr?)
        case call(Expr, Arguments)
        case filter(Expr, name: String, Arguments)
        case test(Expr, name: String, Arguments, negated: Bool)
        case unary(UnaryOperator, Expr)
        case binary(BinaryOperator, Expr, Expr)
        case and(Expr, Expr)
        case or(Expr, Expr)
        case not(Expr)
        case compare(Expr, [(CompareOperator, Expr)])
        case concat([Expr])
        case conditional(condition: Expr, then: Expr, otherwise: Expr?)
    }
    var kind: Kind
    var position: SourcePosition
}

/// A literal's value (kept apart from the runtime `Value`, which holds reference types).
enum Constant: Sendable {
    case none, bool(Bool), int(Int), double(Double), string(String)
}

struct Arguments: Sendable {
    var positional: [Expr] = []
    var keyword: [(String, Expr)] = []
}

enum UnaryOperator: String, Sendable { case negate = "-", plus = "+" }
enum BinaryOperator: String, Sendable {
    case add = "+", subtract = "-", multiply = "*", divide = "/", floorDivide = "//", modulo = "%", power = "**"
}
enum CompareOperator: String, Sendable {
    case equal = "==", notEqual = "!=", less = "<", lessEqual = "<=", greater = ">", greaterEqual = ">="
    case contains = "in", notContains = "not in"
}

/// What `{% set %}` and `{% for %}` assign to.
indirect enum AssignTarget: Sendable {
    case name(String)
    case tuple([AssignTarget])
    /// `{% set ns.attribute = ... %}`: an attribute of a namespace.
    case namespaceAttribute(String, String)
}

struct Stmt: Sendable {
    indirect enum Kind: Sendable {
        case text(String)
        case output(Expr)
        case ifChain([(Expr, [Stmt])], otherwise: [Stmt])
        case forLoop(target: AssignTarget, iterable: Expr, filter: Expr?, body: [Stmt], otherwise: [Stmt])
        case set(AssignTarget, Expr)
        case setBlock(AssignTarget, filters: [(String, Arguments, SourcePosition)], body: [Stmt])
        case macro(MacroDefinition)
        case breakLoop
        case continueLoop
        case generation([Stmt])
    }
    var kind: Kind
    var position: SourcePosition
}

struct MacroDefinition: Sendable {
    var name: String
    var parameters: [(String, Expr?)]
    var body: [Stmt]
}
