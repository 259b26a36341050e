// Errors the server answers with, in OpenAI's (and vLLM's) shape: status 400 for a request that is wrong (bad JSON,
// fields, token ids, lengths, adapter limits), 404 for a model or adapter path that does not exist, 500 when a
// forward fails. The body is {"error": {"message", "type", "param", "code"}}; `code` is the status, as vLLM sends it.
import LoRAFormats

/// An error answered to an HTTP client.
public struct APIError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Int, Sendable {
        case badRequest = 400, notFound = 404, internalError = 500, unavailable = 503
    }
    public let kind: Kind
    public let message: String
    /// The request field at fault, when one is.
    public let param: String?

    public init(_ kind: Kind, _ message: String, param: String? = nil) { (self.kind, self.message, self.param) = (kind, message, param) }
    public static func badRequest(_ message: String, param: String? = nil) -> APIError { APIError(.badRequest, message, param: param) }
    public static func notFound(_ message: String, param: String? = nil) -> APIError { APIError(.notFound, message, param: param) }

    public var status: Int { kind.rawValue }
    /// vLLM's names for the error types.
    public var type: String {
        switch kind {
        case .badRequest: "BadRequestError"
        case .notFound: "NotFoundError"
        case .internalError: "InternalServerError"
        case .unavailable: "ServiceUnavailableError"
        }
    }
    public var description: String { "\(status) \(type): \(message)" }

    /// The response body.
    public var json: JSONValue {
        .object(["error": .object(["message": .string(message), "type": .string(type),
                                   "param": param.map(JSONValue.string) ?? .null, "code": .integer(status)])])
    }
}

extension JSONValue {
    /// One line of JSON (keys sorted): a response body, or one server-sent event's data.
    public var compact: String {
        switch self {
        case .null: "null"
        case .bool(let b): b ? "true" : "false"
        case .integer(let i): String(i)
        case .number(let d): d.isFinite ? "\(d)" : "null"
        case .string(let s): Self.quote(s)
        case .array(let a): "[" + a.map(\.compact).joined(separator: ",") + "]"
        case .object(let o): "{" + o.keys.sorted().map { Self.quote($0) + ":" + o[$0]!.compact }.joined(separator: ",") + "}"
        }
    }
}
