// The bodies the server reads: POST /v1/completions (OpenAI's fields, with vLLM's `top_k`, `stop_token_ids` and
// `return_token_ids`) and the adapter endpoints' {"lora_name", "lora_path"}. Every field is checked for its type and
// range here; an unknown field is an error (a client that sends `top_p: 0.9` must not get silent full sampling). What
// needs the model (the model's name, the vocabulary, the positions) is checked on the engine's thread.
import Foundation
import LoRAFormats

/// A parsed POST /v1/completions body.
public struct CompletionRequest: Sendable, Equatable {
    public enum Prompt: Sendable, Equatable {
        /// Text, encoded without special tokens (as `lora generate --prompt`).
        case text(String)
        case ids([Int])
    }
    /// The base model's served name or an adapter's name.
    public var model: String
    public var prompt: Prompt
    /// OpenAI's default is 16.
    public var maxTokens = 16
    /// OpenAI's default is 1; 0 is greedy.
    public var temperature: Float = 1
    /// 0: every token (vLLM's -1 is read as 0).
    public var topK = 0
    /// nil: a random seed.
    public var seed: UInt64?
    /// Up to 4 stop strings.
    public var stop: [String] = []
    /// Token ids that end the request besides the model's end-of-sequence tokens.
    public var stopTokenIDs: [Int] = []
    public var stream = false
    /// `stream_options.include_usage`: a last chunk with the usage.
    public var includeUsage = false
    /// Adds `choices[0].token_ids`.
    public var returnTokenIDs = false

    public init(model: String, prompt: Prompt) { (self.model, self.prompt) = (model, prompt) }

    static let fields: Set<String> = ["model", "prompt", "max_tokens", "temperature", "top_k", "seed", "stop", "stop_token_ids",
                                      "stream", "stream_options", "return_token_ids", "n", "top_p", "echo", "logprobs", "user"]

    /// Reads a body; throws a 400 naming the field for anything malformed.
    public static func parse(_ body: Data) throws(APIError) -> CompletionRequest {
        let object = try jsonObject(body)
        if let unknown = object.keys.sorted().first(where: { !fields.contains($0) }) {
            throw .badRequest("unknown field \"\(unknown)\"", param: unknown)
        }
        guard case .string(let model)? = object["model"] else { throw .badRequest("\"model\" must be a string: the base model's or an adapter's name", param: "model") }
        let prompt: Prompt
        switch object["prompt"] {
        case .string(let text)?: prompt = .text(text)
        case .array(let items)? where items.allSatisfy({ $0.intValue != nil }) && !items.isEmpty:
            prompt = .ids(items.map { $0.intValue! })
        case .array(let items)? where items.count == 1 && items[0].stringValue != nil: prompt = .text(items[0].stringValue!)
        case .array(let items)? where items.count == 1 && items[0].arrayValue?.allSatisfy({ $0.intValue != nil }) == true:
            prompt = .ids(items[0].arrayValue!.map { $0.intValue! })
        case .array(let items)? where items.count > 1 && items.allSatisfy({ $0.stringValue != nil || $0.arrayValue != nil }):
            throw .badRequest("one prompt per request: \"prompt\" holds \(items.count) prompts", param: "prompt")
        default: throw .badRequest("\"prompt\" must be a string or an array of token ids", param: "prompt")
        }
        var request = CompletionRequest(model: model, prompt: prompt)

        func present(_ key: String) -> JSONValue? {
            guard let value = object[key], value != .null else { return nil }
            return value
        }
        func bool(_ key: String) throws(APIError) -> Bool? {
            guard let value = present(key) else { return nil }
            guard let b = value.boolValue else { throw .badRequest("\"\(key)\" must be true or false", param: key) }
            return b
        }
        if let value = present("max_tokens") {
            guard let n = value.intValue, n >= 1 else { throw .badRequest("\"max_tokens\" must be an integer ≥ 1, got \(value.compact)", param: "max_tokens") }
            request.maxTokens = n
        }
        if let value = present("temperature") {
            guard let t = value.doubleValue, t >= 0, t.isFinite, Float(t).isFinite else {
                throw .badRequest("\"temperature\" must be a number ≥ 0, got \(value.compact)", param: "temperature")
            }
            request.temperature = Float(t)
        }
        if let value = present("top_k") {
            guard let k = value.intValue, k >= -1 else { throw .badRequest("\"top_k\" must be an integer ≥ -1 (-1 or 0: every token), got \(value.compact)", param: "top_k") }
            request.topK = max(k, 0)
        }
        if let value = present("seed") {
            guard let s = value.intValue else { throw .badRequest("\"seed\" must be an integer, got \(value.compact)", param: "seed") }
            request.seed = UInt64(bitPattern: Int64(s))
        }
        switch present("stop") {
        case nil: break
        case .string(let s)?: request.stop = [s]
        case .array(let items)? where items.allSatisfy({ $0.stringValue != nil }):
            guard items.count <= 4 else { throw .badRequest("\"stop\" takes at most 4 strings, got \(items.count)", param: "stop") }
            request.stop = items.map { $0.stringValue! }
        default: throw .badRequest("\"stop\" must be a string or an array of up to 4 strings", param: "stop")
        }
        guard request.stop.allSatisfy({ !$0.isEmpty }) else { throw .badRequest("\"stop\": a stop string must not be empty", param: "stop") }
        if let value = present("stop_token_ids") {
            guard let items = value.arrayValue, items.allSatisfy({ $0.intValue != nil }) else {
                throw .badRequest("\"stop_token_ids\" must be an array of token ids", param: "stop_token_ids")
            }
            request.stopTokenIDs = items.map { $0.intValue! }
        }
        request.stream = try bool("stream") ?? false
        if let value = present("stream_options") {
            guard request.stream else { throw .badRequest("\"stream_options\" needs \"stream\": true", param: "stream_options") }
            guard let options = value.objectValue, options.keys.allSatisfy({ $0 == "include_usage" }),
                  options["include_usage"].map({ $0.boolValue != nil || $0 == .null }) ?? true else {
                throw .badRequest("\"stream_options\" must be {\"include_usage\": true or false}", param: "stream_options")
            }
            request.includeUsage = options["include_usage"]?.boolValue ?? false
        }
        request.returnTokenIDs = try bool("return_token_ids") ?? false
        // OpenAI fields accepted only at the value that asks for nothing this server does not do.
        if let value = present("n"), value.intValue != 1 { throw .badRequest("\"n\": one completion per request (n = 1)", param: "n") }
        if let value = present("top_p"), value.doubleValue != 1 {
            throw .badRequest("\"top_p\" other than 1 is not supported (use \"top_k\")", param: "top_p")
        }
        if try bool("echo") == true { throw .badRequest("\"echo\": true is not supported", param: "echo") }
        if present("logprobs") != nil { throw .badRequest("\"logprobs\" is not supported", param: "logprobs") }
        if let value = present("user"), value.stringValue == nil { throw .badRequest("\"user\" must be a string", param: "user") }
        return request
    }
}

/// A parsed POST /v1/load_lora_adapter or /v1/unload_lora_adapter body.
public struct AdapterRequest: Sendable, Equatable {
    public var name: String
    /// Required to load; ignored when unloading.
    public var path: String?

    /// `needsPath`: loading (`lora_path` required).
    public static func parse(_ body: Data, needsPath: Bool) throws(APIError) -> AdapterRequest {
        let object = try jsonObject(body)
        let known: Set<String> = needsPath ? ["lora_name", "lora_path"] : ["lora_name", "lora_path", "lora_int_id"]
        if let unknown = object.keys.sorted().first(where: { !known.contains($0) }) {
            throw .badRequest("unknown field \"\(unknown)\"", param: unknown)
        }
        guard case .string(let name)? = object["lora_name"], !name.isEmpty else {
            throw .badRequest("\"lora_name\" must be a non-empty string", param: "lora_name")
        }
        var path: String?
        switch object["lora_path"] {
        case .string(let p)? where !p.isEmpty: path = p
        case nil, .null?: guard !needsPath else { throw .badRequest("\"lora_path\" is required: the PEFT adapter's folder", param: "lora_path") }
        default: throw .badRequest("\"lora_path\" must be a non-empty string", param: "lora_path")
        }
        return AdapterRequest(name: name, path: path)
    }
}

/// The body as a JSON object, or a 400.
func jsonObject(_ body: Data) throws(APIError) -> [String: JSONValue] {
    let value: JSONValue
    do { value = try JSONValue.parse(body) } catch {
        throw .badRequest(body.isEmpty ? "the request has no body (a JSON object is expected)" : "malformed JSON: \(String(describing: error).prefix(300))")
    }
    guard let object = value.objectValue else { throw .badRequest("the body must be a JSON object") }
    return object
}
