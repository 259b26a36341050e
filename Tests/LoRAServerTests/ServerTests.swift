// lora-serve's server over real TCP: a tiny Llama fixture with three adapters (the fixture's own and two written
// here with other ranks, alphas and targets), started on a free loopback port. Greedy completions equal the request
// generated alone with only its adapter loaded the usual way, concurrent requests on different adapters share decode
// forwards, streams carry the same text and ids as plain answers, adapters load and unload at run time, stop strings
// cut the text as vLLM does, bad requests get their status and JSON error while the server keeps serving, and a
// graceful shutdown lets streams in flight finish.
import Foundation
import Logging
import LoRAServer
import LoRATestSupport
import SwiftLoRA
import Testing

let fixtureRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures").path

/// The fixture model, its adapters, and the server over them.
struct ServerFixture {
    static let folder = fixtureRoot + "/llama-tiny"
    let adapters: [(name: String, folder: String)]
    let tokenizer: any Tokenizer

    init() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("lora-serve-\(UUID().uuidString)").path
        adapters = [("fixture", Self.folder + "/adapter"), ("second", directory + "/second"), ("third", directory + "/third")]
        try Self.write(LoRAConfig(rank: 3, alpha: 5, targets: .names(["v_proj", "gate_proj", "down_proj"]), useRSLoRA: true),
                       seed: 21, to: adapters[1].folder)
        try Self.write(LoRAConfig(rank: 6, alpha: 12, targets: .allLinear), seed: 42, to: adapters[2].folder)
        tokenizer = try loadTokenizer(folder: Self.folder)
    }

    /// A PEFT folder of `config` with random A and random B (not zero, so it changes the output).
    static func write(_ config: LoRAConfig, seed: UInt64, to folder: String) throws {
        let backend = CPUBackend.shared
        let model = try ModelRegistry.standard.load(folder: Self.folder, backend: backend)
        try model.applyLoRA(config, seed: seed)
        for (i, (_, layer)) in model.loraLayers.enumerated() {
            let values = randomValues(layer.loraB.count, seed: seed &+ UInt64(i)).map { $0 * 0.5 }
            try backend.copy(backend.upload(values, shape: layer.loraB.shape), to: layer.loraB)
        }
        try model.saveAdapter(folder: folder)
    }

    /// A server with `loaded` of the adapters (by index) loaded at start.
    func start(loaded: [Int] = [0, 1, 2], maxBatch: Int = 8, maxLoras: Int = 8) async throws -> RunningServer {
        let model = try ModelRegistry.standard.load(folder: Self.folder, backend: CPUBackend.shared)
        model.maxAdapters = maxLoras
        for i in loaded { try model.loadAdapter(name: adapters[i].name, folder: adapters[i].folder) }
        let engine = try Engine(model: model, tokenizer: tokenizer, servedName: "tiny", modelPath: Self.folder, maxBatch: maxBatch)
        var logger = Logger(label: "lora-serve-tests")
        logger.logLevel = .warning
        return try await OpenAIServer(engine: engine, port: 0, logger: logger).start()
    }

    /// The ids and text of `prompt` generated alone, greedy, with only adapter `index` loaded the usual way (nil: none).
    func alone(_ index: Int?, prompt: [Int], maxTokens: Int) throws -> (ids: [Int], text: String) {
        let model = try ModelRegistry.standard.load(folder: Self.folder, backend: CPUBackend.shared)
        if let index { try model.loadAdapter(folder: adapters[index].folder) }
        let stop = model.endOfSequenceTokens.union(tokenizer.eosTokenID.map { [$0] } ?? [])
        let ids = try model.generate(prompt: prompt, maxTokens: maxTokens, stop: stop)
        return (ids, try text(ids))
    }

    /// The server's text for ids: special tokens skipped (vLLM's default).
    func text(_ ids: [Int]) throws -> String { try tokenizer.decode(ids, skipSpecialTokens: true) }

    func prompt(_ seed: UInt64, length: Int) -> [Int] {
        var generator = SeededGenerator(seed: seed)
        return (0..<length).map { _ in 2 + Int(generator.next() % 390) }
    }
}

func completion(_ model: String, prompt: [Int], maxTokens: Int, extra: String = "") -> String {
    #"{"model": "\#(model)", "prompt": [\#(prompt.map(String.init).joined(separator: ","))], "max_tokens": \#(maxTokens), "temperature": 0\#(extra)}"#
}

extension JSONValue {
    subscript(_ key: String) -> JSONValue? { objectValue?[key] }
    subscript(_ index: Int) -> JSONValue? { arrayValue.flatMap { $0.indices.contains(index) ? $0[index] : nil } }
    var ints: [Int]? { arrayValue?.compactMap(\.intValue) }
}

extension HTTPReply {
    /// The first choice of a JSON answer.
    var choice: JSONValue? { json.map(JSONValue.object)?["choices"]?[0] }
    /// A stream's chunks: concatenated text, concatenated token ids, the finish reason, and whether [DONE] ended it.
    var streamed: (text: String, ids: [Int], finish: String?, done: Bool) {
        var (text, ids, finish) = ("", [Int](), String?.none)
        for event in events where event != "[DONE]" {
            guard let chunk = try? JSONValue.parse(Data(event.utf8)), let choice = chunk["choices"]?[0] else { continue }
            text += choice["text"]?.stringValue ?? ""
            ids += choice["token_ids"]?.ints ?? []
            if let reason = choice["finish_reason"]?.stringValue { finish = reason }
        }
        return (text, ids, finish, events.last == "[DONE]")
    }
}

@Suite("lora-serve over HTTP")
struct ServerTests {
    @Test("GET /v1/models lists the base model and every adapter with the base as parent")
    func models() async throws {
        let fixture = try ServerFixture()
        let server = try await fixture.start()
        let reply = try await HTTPTestClient.send(port: server.port, "GET", "/v1/models")
        try await server.shutdown()
        #expect(reply.status == 200)
        let list = try #require(reply.json)
        #expect(list["object"] == .string("list"))
        let data = try #require(list["data"]?.arrayValue)
        #expect(data.compactMap { $0["id"]?.stringValue } == ["tiny", "fixture", "second", "third"])
        #expect(data[0]["parent"] == .null)
        #expect(data.dropFirst().allSatisfy { $0["parent"] == .string("tiny") && $0["object"] == .string("model") })
        #expect(data[2]["root"] == .string(fixture.adapters[1].folder))
    }

    @Test("concurrent greedy completions on every adapter and the base equal each run alone; decode forwards are shared")
    func concurrentEqualsAlone() async throws {
        let fixture = try ServerFixture()
        let server = try await fixture.start(maxBatch: 4)
        // (adapter index or nil, prompt length, max tokens), two rounds over base and adapters.
        let plan: [(Int?, Int, Int)] = [(0, 5, 20), (nil, 3, 24), (1, 8, 16), (2, 2, 22), (0, 11, 12), (2, 6, 18), (1, 4, 25), (nil, 9, 14)]
        let names = ["fixture", "second", "third"]
        let replies = try await withThrowingTaskGroup(of: (Int, HTTPReply).self) { group in
            for (i, (adapter, length, maxTokens)) in plan.enumerated() {
                let body = completion(adapter.map { names[$0] } ?? "tiny", prompt: fixture.prompt(UInt64(100 + i), length: length),
                                      maxTokens: maxTokens, extra: #", "return_token_ids": true"#)
                group.addTask { (i, try await HTTPTestClient.post(port: server.port, "/v1/completions", body)) }
            }
            var replies = [HTTPReply?](repeating: nil, count: plan.count)
            for try await (i, reply) in group { replies[i] = reply }
            return replies.map { $0! }
        }
        let stats = server.engine.stats
        try await server.shutdown()
        for (i, (adapter, length, maxTokens)) in plan.enumerated() {
            let reply = replies[i]
            #expect(reply.status == 200, "request \(i): \(reply.text)")
            let expected = try fixture.alone(adapter, prompt: fixture.prompt(UInt64(100 + i), length: length), maxTokens: maxTokens)
            let choice = try #require(reply.choice)
            #expect(choice["token_ids"]?.ints == expected.ids, "request \(i), adapter \(String(describing: adapter))")
            #expect(choice["text"]?.stringValue == expected.text, "request \(i)")
            #expect(choice["finish_reason"]?.stringValue == (expected.ids.count < maxTokens ? "stop" : "length"))
            let usage = reply.json.map(JSONValue.object)?["usage"]
            #expect(usage?["prompt_tokens"]?.intValue == length && usage?["completion_tokens"]?.intValue == expected.ids.count)
            #expect(reply.json?["object"] == .string("text_completion"))
        }
        // Requests overlapped in the engine: some decode forwards ran several rows.
        #expect(stats.decodedRows > stats.decodeSteps, "\(stats)")
    }

    @Test("a stream carries the text and ids of the plain answer, then [DONE]; usage when asked; no token_ids unless asked")
    func streaming() async throws {
        let fixture = try ServerFixture()
        let server = try await fixture.start()
        let prompt = fixture.prompt(7, length: 4)
        let plain = try await HTTPTestClient.post(port: server.port, "/v1/completions",
                                                  completion("second", prompt: prompt, maxTokens: 20, extra: #", "return_token_ids": true"#))
        let streamed = try await HTTPTestClient.post(port: server.port, "/v1/completions", completion(
            "second", prompt: prompt, maxTokens: 20, extra: #", "return_token_ids": true, "stream": true, "stream_options": {"include_usage": true}"#))
        let bare = try await HTTPTestClient.post(port: server.port, "/v1/completions", completion("second", prompt: prompt, maxTokens: 20))
        let text = try await HTTPTestClient.post(port: server.port, "/v1/completions",
                                                 #"{"model": "third", "prompt": "hello world", "max_tokens": 6, "temperature": 0}"#)
        try await server.shutdown()
        #expect(streamed.status == 200 && streamed.headers["content-type"] == "text/event-stream")
        let stream = streamed.streamed
        let expected = try fixture.alone(1, prompt: prompt, maxTokens: 20)
        #expect(stream.done)
        #expect(stream.text == plain.choice?["text"]?.stringValue && stream.text == expected.text)
        #expect(stream.ids == expected.ids && plain.choice?["token_ids"]?.ints == expected.ids)
        #expect(stream.finish == plain.choice?["finish_reason"]?.stringValue)
        let usage = try #require(try? JSONValue.parse(Data(streamed.events[streamed.events.count - 2].utf8)))
        #expect(usage["usage"]?["completion_tokens"]?.intValue == expected.ids.count && usage["choices"]?.arrayValue?.isEmpty == true)
        #expect(bare.choice?["token_ids"] == nil && bare.choice?["text"] == plain.choice?["text"])
        // A text prompt is encoded without special tokens, as `lora generate --prompt`.
        let textExpected = try fixture.alone(2, prompt: try fixture.tokenizer.encode("hello world"), maxTokens: 6)
        #expect(text.choice?["text"]?.stringValue == textExpected.text)
    }

    @Test("stop strings: the text ends before the first match, ids up to the token that completed it, streamed alike")
    func stopStrings() async throws {
        let fixture = try ServerFixture()
        let server = try await fixture.start()
        let prompt = fixture.prompt(11, length: 5)
        let full = try fixture.alone(0, prompt: prompt, maxTokens: 30)
        // Two scalars from the middle of the greedy text (not a replacement character, which stands for a partial byte).
        let scalars = Array(full.text.unicodeScalars)
        let start = try #require((3..<scalars.count - 1).first { !["\u{FFFD}"].contains(scalars[$0]) && scalars[$0 + 1] != "\u{FFFD}" })
        let stop = String(String.UnicodeScalarView(scalars[start...start + 1]))
        let cut = try #require(full.text.range(of: stop))
        let expectedText = String(full.text[..<cut.lowerBound])
        let through = try #require((1...full.ids.count).first { try fixture.text(Array(full.ids.prefix($0))).contains(stop) })
        let stopField = #", "stop": ["never-in-this-text", \#(JSONValue.quote(stop))], "return_token_ids": true"#
        let plain = try await HTTPTestClient.post(port: server.port, "/v1/completions", completion("fixture", prompt: prompt, maxTokens: 30, extra: stopField))
        let streamed = try await HTTPTestClient.post(port: server.port, "/v1/completions",
                                                     completion("fixture", prompt: prompt, maxTokens: 30, extra: stopField + #", "stream": true"#))
        try await server.shutdown()
        #expect(plain.choice?["text"]?.stringValue == expectedText, "stop \(JSONValue.quote(stop)) in \(JSONValue.quote(full.text))")
        #expect(plain.choice?["finish_reason"]?.stringValue == "stop")
        #expect(plain.choice?["token_ids"]?.ints == Array(full.ids.prefix(through)))
        #expect(streamed.streamed.text == expectedText && streamed.streamed.finish == "stop" && streamed.streamed.done)
    }

    @Test("an adapter loaded at run time is listed and served like one given at start, then unloaded")
    func loadAndUnload() async throws {
        let fixture = try ServerFixture()
        let server = try await fixture.start(loaded: [0], maxLoras: 2)
        let port = server.port
        let prompt = fixture.prompt(5, length: 6)
        let load = try await HTTPTestClient.post(port: port, "/v1/load_lora_adapter",
                                                 #"{"lora_name": "late", "lora_path": \#(JSONValue.quote(fixture.adapters[2].folder))}"#)
        #expect(load.status == 200, "\(load.text)")
        let listed = try await HTTPTestClient.send(port: port, "GET", "/v1/models")
        #expect(listed.json?["data"]?.arrayValue?.compactMap { $0["id"]?.stringValue } == ["tiny", "fixture", "late"])
        let reply = try await HTTPTestClient.post(port: port, "/v1/completions", completion("late", prompt: prompt, maxTokens: 15,
                                                                                            extra: #", "return_token_ids": true"#))
        #expect(reply.choice?["token_ids"]?.ints == (try fixture.alone(2, prompt: prompt, maxTokens: 15)).ids)
        // --max-loras 2 is reached; the same name twice.
        let third = try await HTTPTestClient.post(port: port, "/v1/load_lora_adapter",
                                                  #"{"lora_name": "more", "lora_path": \#(JSONValue.quote(fixture.adapters[1].folder))}"#)
        #expect(third.status == 400 && third.json?["error"]?["message"]?.stringValue?.contains("at most 2") == true, "\(third.text)")
        let unload = try await HTTPTestClient.post(port: port, "/v1/unload_lora_adapter", #"{"lora_name": "late"}"#)
        #expect(unload.status == 200, "\(unload.text)")
        let gone = try await HTTPTestClient.post(port: port, "/v1/completions", completion("late", prompt: prompt, maxTokens: 3))
        #expect(gone.status == 404 && gone.json?["error"]?["type"] == .string("NotFoundError"))
        let again = try await HTTPTestClient.post(port: port, "/v1/unload_lora_adapter", #"{"lora_name": "late"}"#)
        #expect(again.status == 404)
        // The freed slot takes another adapter.
        let reload = try await HTTPTestClient.post(port: port, "/v1/load_lora_adapter",
                                                   #"{"lora_name": "more", "lora_path": \#(JSONValue.quote(fixture.adapters[1].folder))}"#)
        #expect(reload.status == 200, "\(reload.text)")
        let more = try await HTTPTestClient.post(port: port, "/v1/completions", completion("more", prompt: prompt, maxTokens: 15,
                                                                                           extra: #", "return_token_ids": true"#))
        #expect(more.choice?["token_ids"]?.ints == (try fixture.alone(1, prompt: prompt, maxTokens: 15)).ids)
        try await server.shutdown()
    }

    @Test("unloading an adapter with a request in flight: the request finishes, then the slot is freed")
    func unloadWhileInFlight() async throws {
        let fixture = try ServerFixture()
        let server = try await fixture.start(loaded: [0, 1], maxBatch: 1)
        let port = server.port
        let prompt = fixture.prompt(3, length: 4)
        let body = completion("second", prompt: prompt, maxTokens: 40, extra: #", "return_token_ids": true"#)
        // With one row, the second request on "second" waits behind the first: both are in flight when the unload
        // comes. The first can finish before the second arrives (a slow thread start); then the pair is sent again.
        var pair: (Task<HTTPReply, any Error>, Task<HTTPReply, any Error>)?
        for _ in 0..<10 where pair == nil {
            let done = AsyncCounter()
            let sent = (Task { defer { done.increment() }; return try await HTTPTestClient.post(port: port, "/v1/completions", body) },
                        Task { defer { done.increment() }; return try await HTTPTestClient.post(port: port, "/v1/completions", body) })
            try await waitUntil("two requests in flight, or both answered") { server.engine.requestsInFlight >= 2 || done.value == 2 }
            if server.engine.requestsInFlight >= 2 { pair = sent } else { _ = try await (sent.0.value, sent.1.value) }
        }
        let (first, second) = try #require(pair, "in 10 tries the first request always finished before the second came")
        let unload = try await HTTPTestClient.post(port: port, "/v1/unload_lora_adapter", #"{"lora_name": "second"}"#)
        let (a, b) = (try await first.value, try await second.value)
        let expected = try fixture.alone(1, prompt: prompt, maxTokens: 40).ids
        #expect(unload.status == 200)
        #expect(a.choice?["token_ids"]?.ints == expected && b.choice?["token_ids"]?.ints == expected)
        let models = try await HTTPTestClient.send(port: port, "GET", "/v1/models")
        #expect(models.json?["data"]?.arrayValue?.count == 2)
        try await server.shutdown()
    }

    @Test("bad requests: each gets its status and a JSON error, and the server keeps serving")
    func badRequests() async throws {
        let fixture = try ServerFixture()
        let server = try await fixture.start(maxLoras: 3)
        let port = server.port
        let cases: [(path: String, body: String, status: Int, mentions: String)] = [
            ("/v1/completions", #"{"model": "tiny", "prompt": [1, 2"#, 400, "malformed JSON"),
            ("/v1/completions", #"[1, 2]"#, 400, "JSON object"),
            ("/v1/completions", "", 400, "no body"),
            ("/v1/completions", #"{"model": "tiny", "prompt": [1], "max_tokens": 4, "frobnicate": 1}"#, 400, "frobnicate"),
            ("/v1/completions", #"{"model": "tiny", "prompt": [1], "max_tokens": "4"}"#, 400, "max_tokens"),
            ("/v1/completions", #"{"model": "tiny", "prompt": [1], "max_tokens": 0}"#, 400, "max_tokens"),
            ("/v1/completions", #"{"model": "tiny", "prompt": [1], "max_tokens": -3}"#, 400, "max_tokens"),
            ("/v1/completions", #"{"model": "tiny", "prompt": [1], "temperature": -1}"#, 400, "temperature"),
            ("/v1/completions", #"{"model": "tiny", "prompt": [1], "stream": "yes"}"#, 400, "stream"),
            ("/v1/completions", #"{"model": "tiny", "prompt": [1], "stop": ["a", "b", "c", "d", "e"]}"#, 400, "at most 4"),
            ("/v1/completions", #"{"model": "tiny", "prompt": [1], "top_p": 0.5}"#, 400, "top_p"),
            ("/v1/completions", #"{"model": "tiny", "prompt": [1, 400]}"#, 400, "outside the vocabulary"),
            ("/v1/completions", #"{"model": "tiny", "prompt": [-1]}"#, 400, "outside the vocabulary"),
            ("/v1/completions", #"{"model": "tiny", "prompt": []}"#, 400, "prompt"),
            ("/v1/completions", #"{"model": "tiny", "prompt": ""}"#, 400, "no tokens"),
            ("/v1/completions", #"{"model": "tiny", "prompt": [\#((0..<64).map { _ in "5" }.joined(separator: ","))]}"#, 400, "positions"),
            ("/v1/completions", #"{"model": "tiny", "prompt": ["a", "b"]}"#, 400, "one prompt"),
            ("/v1/completions", #"{"prompt": [1]}"#, 400, "model"),
            ("/v1/completions", #"{"model": "nobody", "prompt": [1]}"#, 404, "nobody"),
            ("/v1/load_lora_adapter", #"{"lora_name": "x", "lora_path": "/no/such/adapter"}"#, 404, "/no/such/adapter"),
            ("/v1/load_lora_adapter", #"{"lora_name": "fixture", "lora_path": \#(JSONValue.quote(fixture.adapters[1].folder))}"#, 400, "already loaded"),
            ("/v1/load_lora_adapter", #"{"lora_name": "tiny", "lora_path": \#(JSONValue.quote(fixture.adapters[1].folder))}"#, 400, "base model"),
            ("/v1/load_lora_adapter", #"{"lora_name": "x", "lora_path": \#(JSONValue.quote(ServerFixture.folder))}"#, 400, "cannot be loaded"),
            ("/v1/load_lora_adapter", #"{"lora_name": "x"}"#, 400, "lora_path"),
            ("/v1/unload_lora_adapter", #"{"lora_name": "nobody"}"#, 404, "nobody"),
        ]
        for c in cases {
            let reply = try await HTTPTestClient.post(port: port, c.path, c.body)
            #expect(reply.status == c.status, "\(c.body): \(reply.text)")
            let error = reply.json?["error"]
            #expect(error?["code"]?.intValue == c.status && error?["type"]?.stringValue != nil, "\(c.body): \(reply.text)")
            #expect(error?["message"]?.stringValue?.contains(c.mentions) == true, "\(c.body): \(reply.text)")
        }
        // Still serving, and a load over the limit is refused: 3 loaded of --max-loras 3.
        let full = try await HTTPTestClient.post(port: port, "/v1/load_lora_adapter",
                                                 #"{"lora_name": "x", "lora_path": \#(JSONValue.quote(fixture.adapters[1].folder))}"#)
        #expect(full.status == 400 && full.text.contains("at most 3"), "\(full.text)")
        let good = try await HTTPTestClient.post(port: port, "/v1/completions", completion("third", prompt: [5, 6, 7], maxTokens: 4))
        #expect(good.status == 200 && good.choice?["text"] != nil)
        try await server.shutdown()
    }

    @Test("graceful shutdown: streams in flight run to their end, then the server stops listening")
    func drainOnShutdown() async throws {
        let fixture = try ServerFixture()
        let prompts = (0..<4).map { fixture.prompt(UInt64(30 + $0), length: 3) }
        let expected = try (0..<4).map { i in try fixture.alone(i == 0 ? nil : i - 1, prompt: prompts[i], maxTokens: 50).ids }
        // With one place the four streams run one after another, and the shutdown is meant to come while the last
        // still runs. A 50-token stream of this model takes milliseconds, which a busy machine can let pass before
        // the shutdown: then the whole exchange is tried again on a fresh server (up to 10 times).
        var drained = false
        for _ in 0..<10 where !drained {
            let server = try await fixture.start(maxBatch: 1)
            let port = server.port
            let heads = AsyncCounter()
            let streams = (0..<4).map { i in
                Task {
                    try await HTTPTestClient.send(port: port, "POST", "/v1/completions", body: completion(
                        ["tiny", "fixture", "second", "third"][i], prompt: prompts[i], maxTokens: 50,
                        extra: #", "stream": true, "return_token_ids": true"#), onFirstBytes: { heads.increment() })
                }
            }
            try await waitUntil("the four streams' first bytes") { heads.value == 4 }
            let inFlight = server.engine.requestsInFlight
            try await server.shutdown()
            for (i, stream) in streams.enumerated() {
                let reply = try await stream.value
                #expect(reply.status == 200 && reply.streamed.done, "stream \(i): \(reply.text.suffix(200))")
                #expect(reply.streamed.ids == expected[i], "stream \(i)")
            }
            await #expect(throws: HTTPClientError.self) { try await HTTPTestClient.send(port: port, "GET", "/v1/models") }
            drained = inFlight >= 1
        }
        #expect(drained, "in every try the shutdown came after all of its requests had finished")
    }
}

/// Polls `condition` every millisecond until it holds, and throws after `seconds` rather than wait forever (a request
/// that failed before its first bytes would never count).
func waitUntil(_ what: String, seconds: Double = 120, _ condition: () -> Bool) async throws {
    let deadline = Date().addingTimeInterval(seconds)
    while !condition() {
        guard Date() < deadline else { throw HTTPClientError(description: "waited \(Int(seconds)) s for \(what)") }
        try await Task.sleep(nanoseconds: 1_000_000)
    }
}

/// A counter threads increment.
final class AsyncCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func increment() { lock.lock(); count += 1; lock.unlock() }
    var value: Int { lock.lock(); defer { lock.unlock() }; return count }
}
