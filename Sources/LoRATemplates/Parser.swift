// A recursive-descent parser for Jinja's statements and expressions, following jinja2/parser.py (3.1.6) so that
// precedence and the odd corners agree: filters bind tighter than arithmetic (`'a' + x | trim`), `-x|abs` is
// `abs(-x)`, `not a is b` is `not (a is b)`, `a if c` without `else` is undefined when `c` is false, adjacent string
// literals concatenate, `for ... in xs if cond`, `{% set ns.x = ... %}`, `{% set x %}...{% endset %}`.
// Nesting (brackets, operators, blocks) is bounded by `maxDepth`, so hostile templates cannot exhaust the stack.
// This file: the token stream and the statements; Parser+Expressions.swift: the expressions, by precedence.

struct Parser {
    var tokens: [Token]
    var index = 0
    var depth = 0
    let maxDepth: Int
    var loopDepth = 0

    static func parse(_ tokens: [Token], maxDepth: Int) throws(TemplateError) -> [Stmt] {
        var parser = Parser(tokens: tokens, maxDepth: maxDepth)
        let body = try parser.subparse(endTags: [])
        guard parser.current.kind == .end else { throw parser.fail("unexpected '\(parser.describe(parser.current))'") }
        return body
    }

    private init(tokens: [Token], maxDepth: Int) {
        self.tokens = tokens
        self.maxDepth = maxDepth
    }

    // MARK: - Token stream

    var current: Token { tokens[index] }
    func look(_ offset: Int = 1) -> Token { tokens[min(index + offset, tokens.count - 1)] }
    mutating func advance() -> Token {
        let token = tokens[index]
        if index < tokens.count - 1 { index += 1 }
        return token
    }

    func isOp(_ op: String) -> Bool { current.kind == .op && current.value == op }
    func isName(_ name: String) -> Bool { current.kind == .name && current.value == name }

    func describe(_ token: Token) -> String {
        switch token.kind {
        case .end: "end of template"
        case .blockEnd: "end of statement block"
        case .variableEnd: "end of print statement"
        case .blockBegin: "begin of statement block"
        case .variableBegin: "begin of print statement"
        case .text: "template data"
        case .string: "string"
        default: token.value
        }
    }

    func fail(_ message: String, _ token: Token? = nil) -> TemplateError {
        TemplateError(.syntax, message).located((token ?? current).position)
    }

    @discardableResult
    mutating func expectOp(_ op: String) throws(TemplateError) -> Token {
        guard isOp(op) else { throw fail("expected '\(op)', got '\(describe(current))'") }
        return advance()
    }

    mutating func expectName() throws(TemplateError) -> Token {
        guard current.kind == .name else { throw fail("expected a name, got '\(describe(current))'") }
        return advance()
    }

    mutating func expectKind(_ kind: Token.Kind) throws(TemplateError) {
        guard current.kind == kind else {
            let wanted = describe(Token(kind: kind, value: "", position: current.position))
            throw fail("expected \(wanted), got '\(describe(current))'")
        }
        _ = advance()
    }

    mutating func nested<T>(_ body: (inout Parser) throws(TemplateError) -> T) throws(TemplateError) -> T {
        depth += 1
        defer { depth -= 1 }
        try checkDepth()
        return try body(&self)
    }

    func checkDepth() throws(TemplateError) {
        guard depth <= maxDepth else {
            throw TemplateError(.limit, "template nested deeper than \(maxDepth) levels").located(current.position)
        }
        do { try StackGuard.check() } catch { throw error.located(current.position) }
    }

    /// A left-deep chain (`a + b + c`, `x.a.b`, `x|f|g`) nests its tree one level per link: count each link
    /// against the nesting bound while the chain is parsed. Returns the levels to give back.
    mutating func chainLink(_ links: inout Int) throws(TemplateError) {
        links += 1
        depth += 1
        try checkDepth()
    }

    // MARK: - Statements

    /// Statements until a block tag whose name is in `endTags` (left as the current token) or the end.
    mutating func subparse(endTags: Set<String>) throws(TemplateError) -> [Stmt] {
        var body: [Stmt] = []
        while true {
            let token = current
            switch token.kind {
            case .end:
                if !endTags.isEmpty {
                    throw fail("unexpected end of template: expected '\(endTags.sorted().joined(separator: "' or '"))'")
                }
                return body
            case .text:
                _ = advance()
                body.append(Stmt(kind: .text(token.value), position: token.position))
            case .variableBegin:
                _ = advance()
                let expr = try parseTuple()
                try expectKind(.variableEnd)
                body.append(Stmt(kind: .output(expr), position: token.position))
            case .blockBegin:
                _ = advance()
                if current.kind == .name, endTags.contains(current.value) { return body }
                body.append(try nested { (p: inout Parser) throws(TemplateError) in try p.parseStatement() })
                try expectKind(.blockEnd)
            default:
                throw fail("unexpected '\(describe(token))'")
            }
        }
    }

    /// The body of a block whose head was just parsed: `%}`, statements, the end tag (consumed when `drop`).
    mutating func parseBody(_ endTags: Set<String>, drop: Bool = false) throws(TemplateError) -> [Stmt] {
        try expectKind(.blockEnd)
        let body = try subparse(endTags: endTags)
        if drop { _ = advance() }
        return body
    }

    private static let unsupportedTags: Set<String> = [
        "block", "extends", "include", "import", "from", "call", "filter", "with", "autoescape", "do", "print",
        "trans", "pluralize", "endtrans",
    ]

    mutating func parseStatement() throws(TemplateError) -> Stmt {
        let token = current
        guard token.kind == .name else { throw fail("tag name expected, got '\(describe(token))'") }
        switch token.value {
        case "if": return try parseIf()
        case "for": return try parseFor()
        case "set": return try parseSet()
        case "macro": return try parseMacro()
        case "generation":
            _ = advance()
            // The body is a function in Jinja (a call block), so a loop around it cannot be broken from inside.
            let savedLoopDepth = loopDepth
            loopDepth = 0
            let body = try parseBody(["endgeneration"], drop: true)
            loopDepth = savedLoopDepth
            return Stmt(kind: .generation(body), position: token.position)
        case "break", "continue":
            _ = advance()
            guard loopDepth > 0 else { throw fail("'\(token.value)' outside of a loop", token) }
            return Stmt(kind: token.value == "break" ? .breakLoop : .continueLoop, position: token.position)
        default:
            if Self.unsupportedTags.contains(token.value) {
                throw TemplateError(.unsupported, "the '{% \(token.value) %}' tag is not supported in chat templates")
                    .located(token.position)
            }
            throw fail("unknown tag '\(token.value)'", token)
        }
    }

    mutating func parseIf() throws(TemplateError) -> Stmt {
        let start = advance()
        var branches: [(Expr, [Stmt])] = []
        var otherwise: [Stmt] = []
        while true {
            let test = try parseTuple(withCondition: false)
            let body = try parseBody(["elif", "else", "endif"])
            branches.append((test, body))
            let tag = advance()
            if tag.value == "elif" { continue }
            if tag.value == "else" { otherwise = try parseBody(["endif"], drop: true) }
            break
        }
        return Stmt(kind: .ifChain(branches, otherwise: otherwise), position: start.position)
    }

    mutating func parseFor() throws(TemplateError) -> Stmt {
        let start = advance()
        let target = try parseAssignTarget(extraEnd: ["in"])
        guard isName("in") else { throw fail("expected 'in', got '\(describe(current))'") }
        _ = advance()
        let iterable = try parseTuple(withCondition: false, extraEnd: ["recursive"])
        var filter: Expr? = nil
        if isName("if") {
            _ = advance()
            filter = try parseExpression()
        }
        if isName("recursive") {
            throw TemplateError(.unsupported, "recursive loops are not supported").located(current.position)
        }
        loopDepth += 1
        let body = try parseBody(["endfor", "else"])
        loopDepth -= 1
        var otherwise: [Stmt] = []
        if advance().value == "else" { otherwise = try parseBody(["endfor"], drop: true) }
        return Stmt(kind: .forLoop(target: target, iterable: iterable, filter: filter, body: body, otherwise: otherwise),
                    position: start.position)
    }

    mutating func parseSet() throws(TemplateError) -> Stmt {
        let start = advance()
        let target: AssignTarget
        if current.kind == .name, look().kind == .op, look().value == "." {
            let ns = advance().value
            _ = advance()
            target = .namespaceAttribute(ns, try expectName().value)
        } else {
            target = try parseAssignTarget(extraEnd: [])
        }
        if isOp("=") {
            _ = advance()
            return Stmt(kind: .set(target, try parseTuple()), position: start.position)
        }
        var filters: [(String, Arguments, SourcePosition)] = []
        while isOp("|") {
            _ = advance()
            let name = try expectName()
            let args = isOp("(") ? try parseCallArguments() : Arguments()
            filters.append((name.value, args, name.position))
        }
        let body = try parseBody(["endset"], drop: true)
        return Stmt(kind: .setBlock(target, filters: filters, body: body), position: start.position)
    }

    mutating func parseMacro() throws(TemplateError) -> Stmt {
        let start = advance()
        let name = try expectName().value
        try expectOp("(")
        var parameters: [(String, Expr?)] = []
        while !isOp(")") {
            if !parameters.isEmpty { try expectOp(",") }
            let parameter = try expectName().value
            if isOp("=") {
                _ = advance()
                parameters.append((parameter, try parseExpression()))
            } else {
                if parameters.contains(where: { $0.1 != nil }) {
                    throw fail("non-default argument follows default argument")
                }
                parameters.append((parameter, nil))
            }
        }
        try expectOp(")")
        let savedLoopDepth = loopDepth
        loopDepth = 0
        let body = try parseBody(["endmacro"], drop: true)
        loopDepth = savedLoopDepth
        return Stmt(kind: .macro(MacroDefinition(name: name, parameters: parameters, body: body)),
                    position: start.position)
    }

    /// A name or a (possibly parenthesized) tuple of names.
    mutating func parseAssignTarget(extraEnd: Set<String>) throws(TemplateError) -> AssignTarget {
        let expr = try parseTuple(simplified: true, extraEnd: extraEnd)
        return try assignTarget(expr)
    }

    func assignTarget(_ expr: Expr) throws(TemplateError) -> AssignTarget {
        switch expr.kind {
        case .name(let name):
            if ["true", "false", "none", "True", "False", "None"].contains(name) {
                throw TemplateError(.syntax, "cannot assign to '\(name)'").located(expr.position)
            }
            return .name(name)
        case .tuple(let items):
            var targets: [AssignTarget] = []
            for item in items { targets.append(try assignTarget(item)) }
            return .tuple(targets)
        default:
            throw TemplateError(.syntax, "can't assign to this expression").located(expr.position)
        }
    }
}
