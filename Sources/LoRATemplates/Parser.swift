// A recursive-descent parser for Jinja's statements and expressions, following jinja2/parser.py (3.1.6) so that
// precedence and the odd corners agree: filters bind tighter than arithmetic (`'a' + x | trim`), `-x|abs` is
// `abs(-x)`, `not a is b` is `not (a is b)`, `a if c` without `else` is undefined when `c` is false, adjacent string
// literals concatenate, `for ... in xs if cond`, `{% set ns.x = ... %}`, `{% set x %}...{% endset %}`.
// Nesting (brackets, operators, blocks) is bounded by `maxDepth`, so hostile templates cannot exhaust the stack.

struct Parser {
    private var tokens: [Token]
    private var index = 0
    private var depth = 0
    private let maxDepth: Int
    private var loopDepth = 0

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

    private var current: Token { tokens[index] }
    private func look(_ offset: Int = 1) -> Token { tokens[min(index + offset, tokens.count - 1)] }
    private mutating func advance() -> Token {
        let token = tokens[index]
        if index < tokens.count - 1 { index += 1 }
        return token
    }

    private func isOp(_ op: String) -> Bool { current.kind == .op && current.value == op }
    private func isName(_ name: String) -> Bool { current.kind == .name && current.value == name }

    private func describe(_ token: Token) -> String {
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

    private func fail(_ message: String, _ token: Token? = nil) -> TemplateError {
        TemplateError(.syntax, message).located((token ?? current).position)
    }

    @discardableResult
    private mutating func expectOp(_ op: String) throws(TemplateError) -> Token {
        guard isOp(op) else { throw fail("expected '\(op)', got '\(describe(current))'") }
        return advance()
    }

    private mutating func expectName() throws(TemplateError) -> Token {
        guard current.kind == .name else { throw fail("expected a name, got '\(describe(current))'") }
        return advance()
    }

    private mutating func expectKind(_ kind: Token.Kind) throws(TemplateError) {
        guard current.kind == kind else {
            let wanted = describe(Token(kind: kind, value: "", position: current.position))
            throw fail("expected \(wanted), got '\(describe(current))'")
        }
        _ = advance()
    }

    private mutating func nested<T>(_ body: (inout Parser) throws(TemplateError) -> T) throws(TemplateError) -> T {
        depth += 1
        defer { depth -= 1 }
        try checkDepth()
        return try body(&self)
    }

    private func checkDepth() throws(TemplateError) {
        guard depth <= maxDepth else {
            throw TemplateError(.limit, "template nested deeper than \(maxDepth) levels").located(current.position)
        }
        do { try StackGuard.check() } catch { throw error.located(current.position) }
    }

    /// A left-deep chain (`a + b + c`, `x.a.b`, `x|f|g`) nests its tree one level per link: count each link
    /// against the nesting bound while the chain is parsed. Returns the levels to give back.
    private mutating func chainLink(_ links: inout Int) throws(TemplateError) {
        links += 1
        depth += 1
        try checkDepth()
    }

    // MARK: - Statements

    /// Statements until a block tag whose name is in `endTags` (left as the current token) or the end.
    private mutating func subparse(endTags: Set<String>) throws(TemplateError) -> [Stmt] {
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
    private mutating func parseBody(_ endTags: Set<String>, drop: Bool = false) throws(TemplateError) -> [Stmt] {
        try expectKind(.blockEnd)
        let body = try subparse(endTags: endTags)
        if drop { _ = advance() }
        return body
    }

    private static let unsupportedTags: Set<String> = [
        "block", "extends", "include", "import", "from", "call", "filter", "with", "autoescape", "do", "print",
        "trans", "pluralize", "endtrans",
    ]

    private mutating func parseStatement() throws(TemplateError) -> Stmt {
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

    private mutating func parseIf() throws(TemplateError) -> Stmt {
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

    private mutating func parseFor() throws(TemplateError) -> Stmt {
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

    private mutating func parseSet() throws(TemplateError) -> Stmt {
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

    private mutating func parseMacro() throws(TemplateError) -> Stmt {
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
    private mutating func parseAssignTarget(extraEnd: Set<String>) throws(TemplateError) -> AssignTarget {
        let expr = try parseTuple(simplified: true, extraEnd: extraEnd)
        return try assignTarget(expr)
    }

    private func assignTarget(_ expr: Expr) throws(TemplateError) -> AssignTarget {
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

    // MARK: - Expressions

    private func isTupleEnd(_ extraEnd: Set<String>) -> Bool {
        switch current.kind {
        case .variableEnd, .blockEnd, .end: return true
        case .op: return current.value == ")"
        case .name: return extraEnd.contains(current.value)
        default: return false
        }
    }

    /// Comma-separated expressions: one alone is itself, more (or a trailing comma) a tuple.
    private mutating func parseTuple(simplified: Bool = false, withCondition: Bool = true,
                                     extraEnd: Set<String> = [], explicitParentheses: Bool = false)
        throws(TemplateError) -> Expr {
        let start = current.position
        var items: [Expr] = []
        var isTuple = false
        while true {
            if !items.isEmpty { try expectOp(",") }
            if isTupleEnd(extraEnd) { break }
            if simplified {
                items.append(try parsePrimary())
            } else {
                items.append(try parseExpression(withCondition: withCondition))
            }
            if isOp(",") { isTuple = true } else { break }
        }
        if !isTuple {
            if let first = items.first { return first }
            if !explicitParentheses { throw fail("expected an expression, got '\(describe(current))'") }
        }
        return Expr(kind: .tuple(items), position: start)
    }

    private mutating func parseExpression(withCondition: Bool = true) throws(TemplateError) -> Expr {
        try nested { (p: inout Parser) throws(TemplateError) in
            withCondition ? try p.parseConditional() : try p.parseOr()
        }
    }

    private mutating func parseConditional() throws(TemplateError) -> Expr {
        var expr = try parseOr()
        var links = 0
        defer { depth -= links }
        while isName("if") {
            try chainLink(&links)
            let position = advance().position
            let condition = try parseOr()
            var otherwise: Expr? = nil
            if isName("else") {
                _ = advance()
                otherwise = try nested { (p: inout Parser) throws(TemplateError) in try p.parseConditional() }
            }
            expr = Expr(kind: .conditional(condition: condition, then: expr, otherwise: otherwise), position: position)
        }
        return expr
    }

    private mutating func parseOr() throws(TemplateError) -> Expr {
        var left = try parseAnd()
        var links = 0
        defer { depth -= links }
        while isName("or") {
            try chainLink(&links)
            let position = advance().position
            left = Expr(kind: .or(left, try parseAnd()), position: position)
        }
        return left
    }

    private mutating func parseAnd() throws(TemplateError) -> Expr {
        var left = try parseNot()
        var links = 0
        defer { depth -= links }
        while isName("and") {
            try chainLink(&links)
            let position = advance().position
            left = Expr(kind: .and(left, try parseNot()), position: position)
        }
        return left
    }

    private mutating func parseNot() throws(TemplateError) -> Expr {
        if isName("not") {
            let position = advance().position
            let operand = try nested { (p: inout Parser) throws(TemplateError) in try p.parseNot() }
            return Expr(kind: .not(operand), position: position)
        }
        return try parseCompare()
    }

    private mutating func parseCompare() throws(TemplateError) -> Expr {
        let start = current.position
        let left = try parseMath1()
        var operations: [(CompareOperator, Expr)] = []
        while true {
            if current.kind == .op, let op = CompareOperator(rawValue: current.value), op != .contains {
                _ = advance()
                operations.append((op, try parseMath1()))
            } else if isName("in") {
                _ = advance()
                operations.append((.contains, try parseMath1()))
            } else if isName("not"), look().kind == .name, look().value == "in" {
                _ = advance()
                _ = advance()
                operations.append((.notContains, try parseMath1()))
            } else {
                break
            }
        }
        return operations.isEmpty ? left : Expr(kind: .compare(left, operations), position: start)
    }

    private mutating func parseMath1() throws(TemplateError) -> Expr {
        var left = try parseConcat()
        var links = 0
        defer { depth -= links }
        while current.kind == .op, current.value == "+" || current.value == "-" {
            try chainLink(&links)
            let token = advance()
            left = Expr(kind: .binary(BinaryOperator(rawValue: token.value)!, left, try parseConcat()),
                        position: token.position)
        }
        return left
    }

    private mutating func parseConcat() throws(TemplateError) -> Expr {
        let start = current.position
        var items = [try parseMath2()]
        var links = 0
        defer { depth -= links }
        while isOp("~") {
            try chainLink(&links)
            _ = advance()
            items.append(try parseMath2())
        }
        return items.count == 1 ? items[0] : Expr(kind: .concat(items), position: start)
    }

    private mutating func parseMath2() throws(TemplateError) -> Expr {
        var left = try parsePow()
        var links = 0
        defer { depth -= links }
        while current.kind == .op, ["*", "/", "//", "%"].contains(current.value) {
            try chainLink(&links)
            let token = advance()
            left = Expr(kind: .binary(BinaryOperator(rawValue: token.value)!, left, try parsePow()),
                        position: token.position)
        }
        return left
    }

    private mutating func parsePow() throws(TemplateError) -> Expr {
        var left = try parseUnary()
        var links = 0
        defer { depth -= links }
        while isOp("**") {
            try chainLink(&links)
            let token = advance()
            left = Expr(kind: .binary(.power, left, try parseUnary()), position: token.position)
        }
        return left
    }

    private mutating func parseUnary(withFilter: Bool = true) throws(TemplateError) -> Expr {
        try nested { (p: inout Parser) throws(TemplateError) in
            var node: Expr
            if p.isOp("-") || p.isOp("+") {
                let token = p.advance()
                let operand = try p.parseUnary(withFilter: false)
                node = Expr(kind: .unary(token.value == "-" ? .negate : .plus, operand), position: token.position)
            } else {
                node = try p.parsePrimary()
            }
            node = try p.parsePostfix(node)
            if withFilter { node = try p.parseFilterExpression(node) }
            return node
        }
    }

    private mutating func parsePrimary() throws(TemplateError) -> Expr {
        let token = current
        switch token.kind {
        case .name:
            _ = advance()
            switch token.value {
            case "true", "True": return Expr(kind: .constant(.bool(true)), position: token.position)
            case "false", "False": return Expr(kind: .constant(.bool(false)), position: token.position)
            case "none", "None": return Expr(kind: .constant(.none), position: token.position)
            default: return Expr(kind: .name(token.value), position: token.position)
            }
        case .string:
            var text = advance().value
            while current.kind == .string { text += advance().value }
            return Expr(kind: .constant(.string(text)), position: token.position)
        case .integer:
            _ = advance()
            guard let value = Int(token.value) else {
                throw TemplateError(.unsupported, "integer literal \(token.value) does not fit in 64 bits")
                    .located(token.position)
            }
            return Expr(kind: .constant(.int(value)), position: token.position)
        case .float:
            _ = advance()
            return Expr(kind: .constant(.double(Double(token.value) ?? .infinity)), position: token.position)
        case .op where token.value == "(":
            _ = advance()
            let expr = try parseTuple(explicitParentheses: true)
            try expectOp(")")
            return expr
        case .op where token.value == "[":
            _ = advance()
            var items: [Expr] = []
            while !isOp("]") {
                if !items.isEmpty { try expectOp(",") }
                if isOp("]") { break }
                items.append(try parseExpression())
            }
            try expectOp("]")
            return Expr(kind: .list(items), position: token.position)
        case .op where token.value == "{":
            _ = advance()
            var items: [(Expr, Expr)] = []
            while !isOp("}") {
                if !items.isEmpty { try expectOp(",") }
                if isOp("}") { break }
                let key = try parseExpression()
                try expectOp(":")
                items.append((key, try parseExpression()))
            }
            try expectOp("}")
            return Expr(kind: .dict(items), position: token.position)
        default:
            throw fail("unexpected '\(describe(token))'")
        }
    }

    private mutating func parsePostfix(_ start: Expr) throws(TemplateError) -> Expr {
        var node = start
        var links = 0
        defer { depth -= links }
        while true {
            if isOp(".") || isOp("[") {
                try chainLink(&links)
                node = try parseSubscript(node)
            } else if isOp("(") {
                try chainLink(&links)
                let position = current.position
                node = Expr(kind: .call(node, try parseCallArguments()), position: position)
            } else {
                return node
            }
        }
    }

    private mutating func parseFilterExpression(_ start: Expr) throws(TemplateError) -> Expr {
        var node = start
        var links = 0
        defer { depth -= links }
        while true {
            if isOp("|") || isName("is") || isOp("(") { try chainLink(&links) }
            if isOp("|") {
                _ = advance()
                let name = try expectName()
                let args = isOp("(") ? try parseCallArguments() : Arguments()
                node = Expr(kind: .filter(node, name: name.value, args), position: name.position)
            } else if isName("is") {
                node = try parseTest(node)
            } else if isOp("(") {
                let position = current.position
                node = Expr(kind: .call(node, try parseCallArguments()), position: position)
            } else {
                return node
            }
        }
    }

    private mutating func parseTest(_ subject: Expr) throws(TemplateError) -> Expr {
        _ = advance()
        var negated = false
        if isName("not") {
            _ = advance()
            negated = true
        }
        let name = try expectName()
        var args = Arguments()
        if isOp("(") {
            args = try parseCallArguments()
        } else if [.name, .string, .integer, .float].contains(current.kind) || isOp("[") || isOp("{")
                    || isOp("(") {
            if !(isName("else") || isName("or") || isName("and")) {
                if isName("is") { throw fail("you cannot chain multiple tests with 'is'") }
                args.positional = [try parsePostfix(try parsePrimary())]
            }
        }
        return Expr(kind: .test(subject, name: name.value, args, negated: negated), position: name.position)
    }

    private mutating func parseSubscript(_ node: Expr) throws(TemplateError) -> Expr {
        let token = advance()
        if token.value == "." {
            let attribute = advance()
            if attribute.kind == .name {
                return Expr(kind: .attribute(node, attribute.value), position: attribute.position)
            }
            guard attribute.kind == .integer, let i = Int(attribute.value) else {
                throw fail("expected name or number after '.'", attribute)
            }
            return Expr(kind: .item(node, Expr(kind: .constant(.int(i)), position: attribute.position)),
                        position: attribute.position)
        }
        var args: [Expr] = []
        while !isOp("]") {
            if !args.isEmpty { try expectOp(",") }
            args.append(try parseSubscribed(node))
        }
        try expectOp("]")
        if args.count == 1, case .slice = args[0].kind { return args[0] }
        let key = args.count == 1 ? args[0] : Expr(kind: .tuple(args), position: token.position)
        return Expr(kind: .item(node, key), position: token.position)
    }

    /// One subscript: an expression, or a slice `start:stop:step` with any part left out.
    private mutating func parseSubscribed(_ node: Expr) throws(TemplateError) -> Expr {
        let position = current.position
        var start: Expr? = nil
        if !isOp(":") {
            let expr = try parseExpression()
            if !isOp(":") { return expr }
            start = expr
        }
        _ = advance()
        var stop: Expr? = nil
        if !isOp(":") && !isOp("]") && !isOp(",") { stop = try parseExpression() }
        var step: Expr? = nil
        if isOp(":") {
            _ = advance()
            if !isOp("]") && !isOp(",") { step = try parseExpression() }
        }
        return Expr(kind: .slice(node, start: start, stop: stop, step: step), position: position)
    }

    private mutating func parseCallArguments() throws(TemplateError) -> Arguments {
        try expectOp("(")
        var args = Arguments()
        var requireComma = false
        while !isOp(")") {
            if requireComma {
                try expectOp(",")
                if isOp(")") { break }
            }
            if isOp("*") || isOp("**") {
                throw TemplateError(.unsupported, "'*args' and '**kwargs' in calls are not supported")
                    .located(current.position)
            }
            if current.kind == .name, look().kind == .op, look().value == "=" {
                let key = advance().value
                _ = advance()
                args.keyword.append((key, try parseExpression()))
            } else {
                guard args.keyword.isEmpty else { throw fail("positional argument follows keyword argument") }
                args.positional.append(try parseExpression())
            }
            requireComma = true
        }
        try expectOp(")")
        return args
    }
}
