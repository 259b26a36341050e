// The engine: one thread that owns the model, its adapters and the batched generator. Model forwards are blocking
// CPU or OpenCL work and models are not Sendable, so nothing else touches them: HTTP handlers (on NIO's event loops
// and Swift's cooperative pool) post commands to a locked inbox and get their answers back through continuations
// and AsyncStreams. Between decode steps the thread takes every command in the inbox (new completions, cancellations,
// adapter loads and unloads), then runs one step of `BatchedGenerator` over every active request, all adapters in one
// forward.
//
// Unloading an adapter with requests in flight: its name stops being served at once (new requests naming it get 404,
// /v1/models no longer lists it), the requests already admitted or waiting finish normally, and then the slot is
// freed and the unload answers. Loading the same name again before that is refused (400).
import Foundation
import SwiftLoRA

/// What a completion's stream delivers, in order: `started` or `failed` first, then tokens, then `finished` (or
/// `failed` if a forward failed part way).
public enum CompletionEvent: Sendable {
    /// The request was accepted; its prompt has this many tokens.
    case started(promptTokens: Int)
    /// A new token and the text it made safe to show.
    case token(Int, text: String)
    /// The end: the finish reason ("stop" or "length"), the text still held back, the whole output text (cut before a
    /// stop string) and every generated id.
    case finished(reason: String, tail: String, text: String, ids: [Int])
    case failed(APIError)
}

/// A model served under a name: the base model or an adapter.
public struct ServedModel: Sendable, Equatable {
    public let name: String
    /// The model's or the adapter's folder.
    public let path: String
    /// The base model's name for an adapter; nil for the base model.
    public let parent: String?
    /// Unix seconds.
    public let created: Int
}

/// The thread that runs a model for the server.
public final class Engine: @unchecked Sendable {
    // Written once in init, then read by any thread.
    public let servedName: String
    public let modelPath: String
    // Only the engine thread touches these after `start`.
    private let model: any LanguageModel
    private let tokenizer: any Tokenizer
    private let generator: BatchedGenerator
    private let endOfSequence: Set<Int>
    private var jobs: [Int: Job] = [:]  // by generator ticket
    private var tickets: [Int: Int] = [:]  // job id → generator ticket
    private var retiring: [(name: String, slot: Int, done: CheckedContinuation<Void, any Error>)] = []

    // Guarded by `condition`.
    private let condition = NSCondition()
    private var inbox: [Command] = []
    private var stopping = false
    private var nextJobID = 0
    private var served: [ServedModel] = []
    private var inFlight = 0
    private var statsSnapshot = BatchedGenerationStats()
    private var thread: Thread?
    private let exited = DispatchSemaphore(value: 0)

    private enum Command {
        case complete(id: Int, CompletionRequest, AsyncStream<CompletionEvent>.Continuation)
        case cancel(id: Int)
        case load(AdapterRequest, CheckedContinuation<Void, any Error>)
        case unload(AdapterRequest, CheckedContinuation<Void, any Error>)
    }

    private struct Job {
        let id: Int
        let continuation: AsyncStream<CompletionEvent>.Continuation
    }

    /// `model` must have its adapters loaded already (`loadAdapter(name:folder:)`) and is owned by the engine from
    /// now on. `maxBatch`: most requests decoded at once.
    public init(model: any LanguageModel, tokenizer: any Tokenizer, servedName: String, modelPath: String, maxBatch: Int) throws {
        self.model = model
        self.tokenizer = tokenizer
        self.servedName = servedName
        self.modelPath = modelPath
        endOfSequence = model.endOfSequenceTokens.union(tokenizer.eosTokenID.map { [$0] } ?? [])
        try model.packWeightsForInference()
        // vLLM's default: special tokens are left out of the text; ids the tokenizer lacks (a padded vocabulary) too.
        generator = try BatchedGenerator(model: model, maxBatch: maxBatch) { [tokenizer] ids in
            try tokenizer.decode(ids.filter { tokenizer.token(of: $0) != nil }, skipSpecialTokens: true)
        }
        let now = Int(Date().timeIntervalSince1970)
        served = [ServedModel(name: servedName, path: modelPath, parent: nil, created: now)]
            + model.adapterSlots.loaded.map { ServedModel(name: $0.name, path: $0.folder, parent: servedName, created: now) }
    }

    /// Starts the thread.
    public func start() {
        condition.lock()
        defer { condition.unlock() }
        precondition(thread == nil, "the engine was started already")
        let thread = Thread { [self] in loop() }
        thread.name = "lora-engine"
        thread.stackSize = 16 << 20
        self.thread = thread
        thread.start()
    }

    /// Finishes every request it holds, then ends the thread and returns. New requests are refused from now on.
    public func shutdown() {
        condition.lock()
        let started = thread != nil && !stopping
        stopping = true
        condition.signal()
        condition.unlock()
        if started { exited.wait() }
    }

    /// The base model and the adapters being served, base first.
    public var models: [ServedModel] {
        condition.lock()
        defer { condition.unlock() }
        return served
    }

    /// Completions submitted and not yet finished.
    public var requestsInFlight: Int {
        condition.lock()
        defer { condition.unlock() }
        return inFlight
    }

    /// The generator's counts since the engine started: how batched its decode steps were.
    public var stats: BatchedGenerationStats {
        condition.lock()
        defer { condition.unlock() }
        return statsSnapshot
    }

    /// Submits a completion; its events come on the stream. `cancel(id)` drops it (its client went away).
    public func submit(_ request: CompletionRequest) -> (id: Int, events: AsyncStream<CompletionEvent>) {
        let (stream, continuation) = AsyncStream.makeStream(of: CompletionEvent.self)
        condition.lock()
        let id = nextJobID
        nextJobID += 1
        if stopping {
            continuation.yield(.failed(APIError(.unavailable, "the server is shutting down")))
            continuation.finish()
        } else {
            inFlight += 1
            post(.complete(id: id, request, continuation))
        }
        condition.unlock()
        return (id, stream)
    }

    /// Drops a submitted completion, waiting or decoding; its row is free for the next step.
    public func cancel(_ id: Int) {
        condition.lock()
        post(.cancel(id: id))
        condition.unlock()
    }

    /// Loads a PEFT adapter under a name, between decode steps.
    public func loadAdapter(_ request: AdapterRequest) async throws {
        try await withCheckedThrowingContinuation { continuation in
            condition.lock()
            post(.load(request, continuation))
            condition.unlock()
        }
    }

    /// Unloads an adapter: its name is no longer served at once; returns when its requests in flight have finished.
    public func unloadAdapter(_ request: AdapterRequest) async throws {
        try await withCheckedThrowingContinuation { continuation in
            condition.lock()
            post(.unload(request, continuation))
            condition.unlock()
        }
    }

    /// With `condition` locked.
    private func post(_ command: Command) {
        inbox.append(command)
        condition.signal()
    }

    // MARK: - The engine thread

    private func loop() {
        while true {
            condition.lock()
            while inbox.isEmpty && !generator.hasWork && !stopping { condition.wait() }
            let commands = inbox
            inbox = []
            let done = stopping && commands.isEmpty && !generator.hasWork && retiring.isEmpty
            condition.unlock()
            if done { break }
            for command in commands { handle(command) }
            if generator.hasWork {
                do { try generator.step(deliver) } catch { failAll(error) }
                condition.lock()
                statsSnapshot = generator.stats
                condition.unlock()
            }
            finishUnloads()
        }
        exited.signal()
    }

    private func handle(_ command: Command) {
        switch command {
        case .complete(let id, let request, let continuation):
            do throws(APIError) {
                let (ticket, promptTokens) = try admit(request, id: id)
                jobs[ticket] = Job(id: id, continuation: continuation)
                tickets[id] = ticket
                // The prompt's length goes out first: the handler answers with a status before any token.
                continuation.yield(.started(promptTokens: promptTokens))
            } catch {
                continuation.yield(.failed(error))
                continuation.finish()
                finished(jobs: 1)
            }
        case .cancel(let id):
            guard let ticket = tickets.removeValue(forKey: id) else { return }
            generator.cancel(ticket)
            jobs.removeValue(forKey: ticket)?.continuation.finish()
            finished(jobs: 1)
        case .load(let request, let continuation):
            do throws(APIError) {
                try load(request)
                continuation.resume()
            } catch { continuation.resume(throwing: error) }
        case .unload(let request, let continuation):
            guard request.name != servedName, !retiring.contains(where: { $0.name == request.name }),
                  let slot = model.adapterSlots.slot(named: request.name) else {
                return continuation.resume(throwing: APIError.notFound("no adapter named '\(request.name)' is loaded", param: "lora_name"))
            }
            retiring.append((request.name, slot, continuation))
            updateServed()
        }
    }

    /// Submits a completion to the generator, checked against the model; returns its ticket and its prompt's length.
    private func admit(_ request: CompletionRequest, id: Int) throws(APIError) -> (ticket: Int, promptTokens: Int) {
        let slot: Int
        if request.model == servedName {
            slot = -1
        } else if !retiring.contains(where: { $0.name == request.model }), let s = model.adapterSlots.slot(named: request.model) {
            slot = s
        } else {
            throw .notFound("The model `\(request.model)` does not exist (served: \(models.map(\.name).joined(separator: ", ")))", param: "model")
        }
        let prompt: [Int]
        switch request.prompt {
        case .text(let text):
            do { prompt = try tokenizer.encode(text) } catch { throw .badRequest("the prompt cannot be tokenized: \(error)", param: "prompt") }
        case .ids(let ids): prompt = ids
        }
        guard !prompt.isEmpty else { throw .badRequest("the prompt has no tokens", param: "prompt") }
        let vocabulary = model.vocabularySize
        if let bad = prompt.first(where: { !(0..<vocabulary).contains($0) }) {
            throw .badRequest("token id \(bad) is outside the vocabulary 0..<\(vocabulary)", param: "prompt")
        }
        if let bad = request.stopTokenIDs.first(where: { !(0..<vocabulary).contains($0) }) {
            throw .badRequest("stop token id \(bad) is outside the vocabulary 0..<\(vocabulary)", param: "stop_token_ids")
        }
        guard prompt.count < model.maxPositions else {
            throw .badRequest("the prompt's \(prompt.count) tokens leave no room in the model's \(model.maxPositions) positions", param: "prompt")
        }
        var random = SystemRandomNumberGenerator()
        let sampling = Sampling(temperature: request.temperature, topK: request.topK, seed: request.seed ?? random.next())
        let generation = GenerationRequest(id: "cmpl-\(id)", adapterSlot: slot, prompt: prompt, maxTokens: request.maxTokens,
                                           sampling: sampling, stop: endOfSequence.union(request.stopTokenIDs),
                                           stopStrings: request.stop)
        do { return (try generator.submit(generation), prompt.count) } catch { throw .badRequest("\(error)") }
    }

    /// Hands a step's events to their requests' streams.
    private func deliver(_ event: GenerationEvent) {
        switch event {
        case .token(let ticket, let token, let text):
            jobs[ticket]?.continuation.yield(.token(token, text: text))
        case .finished(let ticket, let result, let tail):
            guard let job = jobs.removeValue(forKey: ticket) else { return }
            tickets[job.id] = nil
            job.continuation.yield(.finished(reason: result.finishReason.rawValue, tail: tail, text: result.text ?? "", ids: result.ids))
            job.continuation.finish()
            finished(jobs: 1)
        }
    }

    /// A step threw: its rows' state is unknown, so every request fails with the error.
    private func failAll(_ error: any Error) {
        for ticket in generator.cancelAll() {
            guard let job = jobs.removeValue(forKey: ticket) else { continue }
            tickets[job.id] = nil
            job.continuation.yield(.failed(APIError(.internalError, "generation failed: \(error)")))
            job.continuation.finish()
            finished(jobs: 1)
        }
    }

    private func finished(jobs count: Int) {
        condition.lock()
        inFlight -= count
        condition.unlock()
    }

    private func load(_ request: AdapterRequest) throws(APIError) {
        let name = request.name, path = request.path ?? ""
        guard name != servedName else { throw .badRequest("'\(name)' is the base model's name", param: "lora_name") }
        guard !retiring.contains(where: { $0.name == name }) else {
            throw .badRequest("the adapter '\(name)' is being unloaded (requests in flight); load it again when that is done", param: "lora_name")
        }
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), isFolder.boolValue else {
            throw .notFound("the adapter folder \(path) does not exist", param: "lora_path")
        }
        do { try model.loadAdapter(name: name, folder: path) } catch {
            throw .badRequest("the adapter '\(name)' cannot be loaded from \(path): \(error)", param: "lora_path")
        }
        updateServed()
    }

    /// Unloads the retiring adapters no request uses any more.
    private func finishUnloads() {
        guard !retiring.isEmpty else { return }
        let inUse = generator.slotsInUse
        retiring.removeAll { adapter in
            guard !inUse.contains(adapter.slot) else { return false }
            adapter.done.resume(with: Result { try model.unloadAdapter(name: adapter.name) })
            return true
        }
    }

    /// Publishes the served names (the base, then the loaded adapters not retiring).
    private func updateServed() {
        let previous = models
        let created = Dictionary(previous.map { ($0.name, $0.created) }, uniquingKeysWith: { a, _ in a })
        let now = Int(Date().timeIntervalSince1970)
        let adapters = model.adapterSlots.loaded.filter { adapter in !retiring.contains { $0.name == adapter.name } }
        let list = [previous[0]] + adapters.map {
            ServedModel(name: $0.name, path: $0.folder, parent: servedName, created: created[$0.name] ?? now)
        }
        condition.lock()
        served = list
        condition.unlock()
    }
}
