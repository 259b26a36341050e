// Jinja's expressions for the parser, lowest precedence first as jinja2/parser.py has them: tuples, conditionals,
// or/and/not, comparisons and tests, arithmetic, concatenation, unary operators, filters, then primaries with
// their attributes, subscripts, slices and calls.

extension Parser {

    func isTupleEnd(_ extraEnd: Set<String>) -> Bool {
        switch current.kind {
        case .variableEnd, .blockEnd, .end: return true
        case .op: return current.value == ")"
        case .name: return extraEnd.contains(current.value)
        default: return false
        }
    }

    /// Comma-separated expressions: one alone is itself, more (or a trailing comma) a tuple.
    mutating func parseTuple(simplified: Bool = false, withCondition: Bool = true,
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

    mutating func parseExpression(withCondition: Bool = true) throws(TemplateError) -> Expr {
        try nested { (p: inout Parser) throws(TemplateError) in
            withCondition ? try p.parseConditional() : try p.parseOr()
        }
    }

    mutating func parseConditional() throws(TemplateError) -> Expr {
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

    mutating func parseOr() throws(TemplateError) -> Expr {
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

    mutating func parseAnd() throws(TemplateError) -> Expr {
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

    mutating func parseNot() throws(TemplateError) -> Expr {
        if isName("not") {
            let position = advance().position
            let operand = try nested { (p: inout Parser) throws(TemplateError) in try p.parseNot() }
            return Expr(kind: .not(operand), position: position)
        }
        return try parseCompare()
    }

    mutating func parseCompare() throws(TemplateError) -> Expr {
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

    mutating func parseMath1() throws(TemplateError) -> Expr {
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

    mutating func parseConcat() throws(TemplateError) -> Expr {
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

    mutating func parseMath2() throws(TemplateError) -> Expr {
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

    mutating func parsePow() throws(TemplateError) -> Expr {
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

    mutating func parseUnary(withFilter: Bool = true) throws(TemplateError) -> Expr {
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

    mutating func parsePrimary() throws(TemplateError) -> Expr {
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

    mutating func parsePostfix(_ start: Expr) throws(TemplateError) -> Expr {
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

    mutating func parseFilterExpression(_ start: Expr) throws(TemplateError) -> Expr {
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

    mutating func parseTest(_ subject: Expr) throws(TemplateError) -> Expr {
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

    mutating func parseSubscript(_ node: Expr) throws(TemplateError) -> Expr {
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
    mutating func parseSubscribed(_ node: Expr) throws(TemplateError) -> Expr {
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

    mutating func parseCallArguments() throws(TemplateError) -> Arguments {
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
