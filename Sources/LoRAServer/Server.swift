// The HTTP side: Hummingbird routes for OpenAI's /v1/models and /v1/completions (JSON, or server-sent events with
// "stream": true) and vLLM's /v1/load_lora_adapter and /v1/unload_lora_adapter, over an `Engine`. Handlers only
// parse, post to the engine and write what comes back; no model work runs on NIO's event loops or Swift's pool.
// Graceful shutdown (a signal, or `RunningServer.shutdown`): the listener closes, requests in flight (streams
// included) run to their end, then the engine's thread ends.
import Foundation
import Hummingbird
import Logging
import LoRAFormats
import ServiceLifecycle
import UnixSignals

/// An OpenAI-compatible server over an engine.
public struct OpenAIServer: Sendable {
    public let engine: Engine
    public let host: String
    /// 0: any free port (`RunningServer.port` tells which).
    public let port: Int
    public let logger: Logger
    /// Largest request body read.
    public var maxBodyBytes = 16 << 20

    public init(engine: Engine, host: String = "127.0.0.1", port: Int, logger: Logger = Logger(label: "lora-serve")) {
        (self.engine, self.host, self.port, self.logger) = (engine, host, port, logger)
    }

    /// The routes.
    public func router() -> Router<BasicRequestContext> {
        let router = Router()
        let engine = engine, maxBody = maxBodyBytes
        router.get("/v1/models") { _, _ in json(.ok, modelList(engine)) }
        router.post("/v1/completions") { request, _ in
            do throws(APIError) {
                let completion = try CompletionRequest.parse(try await body(request, maxBody))
                return try await complete(completion, engine: engine)
            } catch { return json(error) }
        }
        router.post("/v1/load_lora_adapter") { request, _ in
            do throws(APIError) {
                let adapter = try AdapterRequest.parse(try await body(request, maxBody), needsPath: true)
                try await adapterCall { try await engine.loadAdapter(adapter) }
                return text("Success: LoRA adapter '\(adapter.name)' added successfully.")
            } catch { return json(error) }
        }
        router.post("/v1/unload_lora_adapter") { request, _ in
            do throws(APIError) {
                let adapter = try AdapterRequest.parse(try await body(request, maxBody), needsPath: false)
                try await adapterCall { try await engine.unloadAdapter(adapter) }
                return text("Success: LoRA adapter '\(adapter.name)' removed successfully.")
            } catch { return json(error) }
        }
        return router
    }

    /// Starts the engine's thread and the server; returns once it listens. `signals`: SIGTERM, SIGINT, ... that
    /// shut it down gracefully.
    public func start(signals: [UnixSignal] = []) async throws -> RunningServer {
        engine.start()
        let (ports, portContinuation) = AsyncStream.makeStream(of: Int.self)
        let app = Application(router: router(), configuration: .init(address: .hostname(host, port: port), serverName: "lora-serve"),
                              onServerRunning: { channel in
                                  portContinuation.yield(channel.localAddress?.port ?? 0)
                                  portContinuation.finish()
                              }, logger: logger)
        let group = ServiceGroup(configuration: .init(services: [app], gracefulShutdownSignals: signals, logger: logger))
        let engine = engine
        let task = Task {
            defer { portContinuation.finish() }
            do { try await group.run() } catch {
                await engine.shutdownAsync()
                throw error
            }
            await engine.shutdownAsync()
        }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next() else {
            try await task.value  // the error that stopped it before it listened
            throw APIError(.internalError, "the server stopped before it listened")
        }
        return RunningServer(port: port, engine: engine, group: group, task: task)
    }
}

/// A server that is listening.
public final class RunningServer: Sendable {
    /// The port it listens on.
    public let port: Int
    public let engine: Engine
    private let group: ServiceGroup
    private let task: Task<Void, any Error>

    init(port: Int, engine: Engine, group: ServiceGroup, task: Task<Void, any Error>) {
        (self.port, self.engine, self.group, self.task) = (port, engine, group, task)
    }

    /// Stops listening, lets the requests in flight finish, stops the engine; returns when all that is done.
    public func shutdown() async throws {
        await group.triggerGracefulShutdown()
        try await task.value
    }

    /// Returns when the server has stopped (after a signal's graceful shutdown).
    public func wait() async throws { try await task.value }
}

extension Engine {
    /// `shutdown` on a thread of its own: it blocks until the engine's thread ends.
    func shutdownAsync() async {
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            Thread { [self] in
                shutdown()
                done.resume()
            }.start()
        }
    }
}

// MARK: - Handlers

/// The request's body, or a 400 when it is too large or cannot be read.
private func body(_ request: Request, _ limit: Int) async throws(APIError) -> Data {
    do {
        let buffer = try await request.body.collect(upTo: limit)
        return Data(buffer.readableBytesView)
    } catch {
        throw .badRequest("the request body cannot be read (at most \(limit) bytes): \(error)")
    }
}

/// Runs a load or unload, its errors as API errors.
private func adapterCall(_ call: () async throws -> Void) async throws(APIError) {
    do { try await call() } catch let error as APIError { throw error } catch {
        throw APIError(.internalError, "\(error)")
    }
}

private func modelList(_ engine: Engine) -> JSONValue {
    .object(["object": .string("list"), "data": .array(engine.models.map { model in
        .object(["id": .string(model.name), "object": .string("model"), "created": .integer(model.created),
                 "owned_by": .string("swift-lora"), "root": .string(model.path), "parent": model.parent.map(JSONValue.string) ?? .null])
    })])
}

/// POST /v1/completions once parsed: the whole answer as JSON, or a stream of events.
private func complete(_ request: CompletionRequest, engine: Engine) async throws(APIError) -> Response {
    let (id, events) = engine.submit(request)
    let created = Int(Date().timeIntervalSince1970)
    let completionID = "cmpl-\(UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased())"
    var iterator = events.makeAsyncIterator()
    // The first event says whether the engine took it: the status depends on it.
    let promptTokens: Int
    switch await iterator.next() {
    case .started(let count)?: promptTokens = count
    case .failed(let error)?: throw error
    default: throw APIError(.internalError, "the engine ended the request before it started")
    }
    @Sendable func choice(text: String, ids: [Int], finish: String?) -> JSONValue {
        var fields: [String: JSONValue] = ["index": .integer(0), "text": .string(text), "logprobs": .null,
                                           "finish_reason": finish.map(JSONValue.string) ?? .null]
        if request.returnTokenIDs { fields["token_ids"] = .array(ids.map(JSONValue.integer)) }
        return .object(fields)
    }
    @Sendable func envelope(_ choices: [JSONValue], usage: JSONValue? = nil) -> JSONValue {
        var fields: [String: JSONValue] = ["id": .string(completionID), "object": .string("text_completion"),
                                           "created": .integer(created), "model": .string(request.model), "choices": .array(choices)]
        if let usage { fields["usage"] = usage }
        return .object(fields)
    }
    @Sendable func usage(_ completionTokens: Int) -> JSONValue {
        .object(["prompt_tokens": .integer(promptTokens), "completion_tokens": .integer(completionTokens),
                 "total_tokens": .integer(promptTokens + completionTokens)])
    }

    guard request.stream else {
        // Collect to the end; a cancelled task (the client went away) drops the request.
        let end = await withTaskCancellationHandler { () async -> CompletionEvent? in
            while let event = await iterator.next() {
                switch event {
                case .finished, .failed: return event
                case .started, .token: continue
                }
            }
            return nil
        } onCancel: { engine.cancel(id) }
        switch end {
        case .finished(let reason, _, let text, let ids)?:
            return json(.ok, envelope([choice(text: text, ids: ids, finish: reason)], usage: usage(ids.count)))
        case .failed(let error)?: throw error
        default: throw APIError(.internalError, "the request was dropped")
        }
    }
    // Server-sent events: a chunk per token that shows text (or carries ids), the finish, the usage if asked, [DONE].
    let stream = AsyncStreamBox(iterator)
    let body = ResponseBody { writer in
        func send(_ value: JSONValue) async throws { try await writer.write(ByteBuffer(string: "data: \(value.compact)\n\n")) }
        var count = 0
        do {
            loop: while let event = await stream.next() {
                switch event {
                case .token(let token, let text):
                    count += 1
                    if !text.isEmpty || request.returnTokenIDs { try await send(envelope([choice(text: text, ids: [token], finish: nil)])) }
                case .finished(let reason, let tail, _, _):
                    try await send(envelope([choice(text: tail, ids: [], finish: reason)]))
                    if request.includeUsage { try await send(envelope([], usage: usage(count))) }
                    break loop
                case .failed(let error):
                    try await send(error.json)
                    break loop
                case .started: continue
                }
            }
            try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
            try await writer.finish(nil)
        } catch {
            engine.cancel(id)  // the client went away: free its row
            throw error
        }
    }
    return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"], body: body)
}

/// Hands an iterator to the response body's closure, which Hummingbird runs once.
private final class AsyncStreamBox: @unchecked Sendable {
    private var iterator: AsyncStream<CompletionEvent>.Iterator
    init(_ iterator: AsyncStream<CompletionEvent>.Iterator) { self.iterator = iterator }
    func next() async -> CompletionEvent? { await iterator.next() }
}

private func json(_ status: HTTPResponse.Status, _ value: JSONValue) -> Response {
    Response(status: status, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(string: value.compact + "\n")))
}

private func json(_ error: APIError) -> Response { json(HTTPResponse.Status(code: error.status), error.json) }

private func text(_ message: String) -> Response {
    Response(status: .ok, headers: [.contentType: "text/plain; charset=utf-8"], body: ResponseBody(byteBuffer: ByteBuffer(string: message)))
}
