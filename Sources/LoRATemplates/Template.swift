// The public entry point for any Jinja source: parse once (`Template(source)`), render many times with a context of
// `TemplateValue`s. Parsing refuses unknown filters and tests and unsupported tags up front, with their position.
// `TemplateLimits` bounds what hostile templates or data can cost.
import Foundation

/// Bounds on what one template may cost; reaching one is a `.limit` `TemplateError`.
public struct TemplateLimits: Sendable, Equatable {
    /// Template text length, in code points.
    public var maxTemplateLength = 1_000_000
    /// Brackets, operators and blocks nested inside each other in the template text.
    public var maxNesting = 100
    /// Nested evaluation (statements, expressions, macro bodies) while rendering.
    public var maxDepth = 600
    /// Loop iterations in one rendering, all loops together.
    public var maxLoopIterations = 1_000_000
    /// Statements and expressions evaluated in one rendering.
    public var maxSteps = 50_000_000
    /// Macro calls nested inside each other (recursion).
    public var maxMacroDepth = 64
    /// Size of the output and of any one string built while rendering, in UTF-8 bytes.
    public var maxOutputBytes = 16 << 20
    /// Items in any one list built while rendering.
    public var maxListLength = 1 << 20

    public init() {}
    public static let `default` = TemplateLimits()
}

/// What a rendering produced: the text and the `{% generation %}` spans in it.
public struct RenderedTemplate: Sendable, Equatable {
    public let text: String
    /// Each `{% generation %}` block's output, in code points (Python string indices: what transformers' tracker
    /// records), in rendering order.
    public let generationCharacterOffsets: [Range<Int>]
    /// The same spans as UTF-8 byte offsets into `text` (what a tokenizer's byte offsets compare against).
    public let generationUTF8Offsets: [Range<Int>]

    /// The same spans as index ranges of `text`.
    public var generationRanges: [Range<String.Index>] {
        generationUTF8Offsets.map { r in
            text.utf8.index(text.utf8.startIndex, offsetBy: r.lowerBound)
                ..< text.utf8.index(text.utf8.startIndex, offsetBy: r.upperBound)
        }
    }
}

/// A parsed Jinja template, configured as transformers configures chat templates (trim_blocks, lstrip_blocks,
/// loop controls, `{% generation %}`, its `tojson`, `raise_exception`, `strftime_now`, `namespace`, sandboxed).
public struct Template: Sendable {
    private let body: [Stmt]
    public let limits: TemplateLimits
    /// Whether the template has `{% generation %}` blocks.
    public let hasGenerationBlocks: Bool

    public init(_ source: String, limits: TemplateLimits = .default) throws(TemplateError) {
        let tokens = try Lexer.tokenize(source, maxTemplateScalars: limits.maxTemplateLength)
        body = try StackGuard.run { () throws(TemplateError) in try Parser.parse(tokens, maxDepth: limits.maxNesting) }
        var validator = Validator()
        try validator.check(body)
        hasGenerationBlocks = validator.sawGeneration
        self.limits = limits
    }

    /// Renders with `context` as the template's variables (above the globals `range`, `namespace`, `dict`,
    /// `raise_exception`, `strftime_now`, which a context variable of the same name hides).
    public func render(_ context: [String: TemplateValue]) throws(TemplateError) -> RenderedTemplate {
        let globals = Scope(parent: nil)
        globals.variables = Globals.make()
        let contextScope = Scope(parent: globals)
        for (key, value) in context { contextScope.variables[key] = Value(value) }
        let root = Scope(parent: contextScope)
        let interpreter = Interpreter(limits: limits)
        try StackGuard.run { () throws(TemplateError) in _ = try interpreter.execute(body, root) }
        return RenderedTemplate(text: interpreter.output,
                                generationCharacterOffsets: interpreter.spans.map(\.scalars),
                                generationUTF8Offsets: interpreter.spans.map(\.utf8))
    }
}

/// Refuses filters and tests that do not exist when the template is parsed, as Jinja does when it compiles.
private struct Validator {
    var sawGeneration = false

    mutating func check(_ statements: [Stmt]) throws(TemplateError) {
        for s in statements { try check(s) }
    }

    mutating func check(_ s: Stmt) throws(TemplateError) {
        switch s.kind {
        case .text, .breakLoop, .continueLoop: break
        case .output(let e): try check(e)
        case .ifChain(let branches, let otherwise):
            for (test, body) in branches { try check(test); try check(body) }
            try check(otherwise)
        case .forLoop(_, let iterable, let filter, let body, let otherwise):
            try check(iterable)
            if let filter { try check(filter) }
            try check(body)
            try check(otherwise)
        case .set(_, let e): try check(e)
        case .setBlock(_, let filters, let body):
            for (name, args, position) in filters {
                guard Filters.table[name] != nil else {
                    throw TemplateError(.unsupported, "unknown filter '\(name)'").located(position)
                }
                try check(args)
            }
            try check(body)
        case .macro(let m):
            for (_, d) in m.parameters { if let d { try check(d) } }
            try check(m.body)
        case .generation(let body):
            sawGeneration = true
            try check(body)
        }
    }

    mutating func check(_ a: Arguments) throws(TemplateError) {
        for e in a.positional { try check(e) }
        for (_, e) in a.keyword { try check(e) }
    }

    mutating func check(_ e: Expr) throws(TemplateError) {
        switch e.kind {
        case .constant, .name: break
        case .list(let items), .tuple(let items), .concat(let items): for i in items { try check(i) }
        case .dict(let pairs): for (k, v) in pairs { try check(k); try check(v) }
        case .attribute(let o, _): try check(o)
        case .item(let o, let k): try check(o); try check(k)
        case .slice(let o, let a, let b, let c):
            try check(o)
            for x in [a, b, c] { if let x { try check(x) } }
        case .call(let f, let args): try check(f); try check(args)
        case .filter(let subject, let name, let args):
            guard Filters.table[name] != nil else {
                throw TemplateError(.unsupported, "unknown filter '\(name)'").located(e.position)
            }
            try check(subject)
            try check(args)
        case .test(let subject, let name, let args, _):
            guard Tests.table[name] != nil else {
                throw TemplateError(.unsupported, "unknown test '\(name)'").located(e.position)
            }
            try check(subject)
            try check(args)
        case .unary(_, let x), .not(let x): try check(x)
        case .binary(_, let a, let b), .and(let a, let b), .or(let a, let b): try check(a); try check(b)
        case .compare(let first, let ops):
            try check(first)
            for (_, x) in ops { try check(x) }
        case .conditional(let c, let t, let o):
            try check(c)
            try check(t)
            if let o { try check(o) }
        }
    }
}
