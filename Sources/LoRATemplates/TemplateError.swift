// The one error type of the template engine. Every failure a template or its data can cause (syntax, an unsupported
// Jinja feature, an undefined value used as a value, a Python type error, `raise_exception`, a hostile-input limit)
// is a `TemplateError` that names the 1-based line and column of the template text it happened at.

/// A template that cannot be parsed or rendered.
public struct TemplateError: Error, CustomStringConvertible, Equatable, Sendable {
    /// What went wrong, in the categories Jinja's own exceptions draw.
    public enum Kind: String, Sendable, Equatable {
        /// Not valid Jinja: an unterminated tag, an unexpected token, a missing `{% endfor %}` (`TemplateSyntaxError`).
        case syntax
        /// Valid Jinja this engine does not implement: `{% include %}`, an unknown filter or test.
        case unsupported
        /// A value that is not there was used where one is needed (`UndefinedError`): `foo.bar` with `foo` undefined.
        case undefined
        /// An operation on the wrong types (`TypeError`, `ValueError`, `ZeroDivisionError` in Python).
        case type
        /// The template called `raise_exception(message)`; `message` is exactly its argument.
        case raised
        /// An operation the sandbox refuses (`SecurityError`): `list.append`, underscore attributes on a namespace.
        case security
        /// A bound on hostile input was reached: nesting depth, loop iterations, output size, macro recursion.
        case limit
    }

    public let kind: Kind
    public let message: String
    /// 1-based position in the template text (after `\r\n` became `\n`); 0 while an error is still travelling
    /// up to the template node that gives it a position.
    public internal(set) var line: Int
    public internal(set) var column: Int

    public init(_ kind: Kind, _ message: String, line: Int = 0, column: Int = 0) {
        self.kind = kind
        self.message = message
        self.line = line
        self.column = column
    }

    public var description: String {
        let place = line > 0 ? "line \(line), column \(column): " : ""
        switch kind {
        case .raised: return "template raised an exception at \(place)\(message)"
        default: return "template error (\(kind.rawValue)) at \(place)\(message)"
        }
    }

    /// The error with a position, unless it already has one (the innermost node that saw it wins).
    func located(_ position: SourcePosition) -> TemplateError {
        if line > 0 { return self }
        var located = self
        located.line = position.line
        located.column = position.column
        return located
    }
}

/// A place in the template text, 1-based.
struct SourcePosition: Sendable, Equatable {
    var line: Int
    var column: Int
}
