// Batched generation (continuous batching over adapters): every request's tokens equal that request generated alone
// with only its adapter loaded the usual way, on every family and device, with fewer places than requests (so
// finished rows are refilled), prompts of different lengths, budgets, stop tokens and a sampled request.
import Foundation
import LoRATestSupport
import SwiftLoRA
import Testing

@Suite("Batched generation")
struct BatchedGenerationTests {
    /// (adapter slot, prompt length, max tokens) per request.
    let plan: [(slot: Int, length: Int, maxTokens: Int)] = [
        (0, 5, 6), (-1, 3, 9), (1, 8, 4), (2, 2, 7), (0, 11, 5), (2, 6, 1), (1, 4, 8), (-1, 9, 3),
    ]

    func requests(_ fixture: MultiAdapterFixture, _ model: any LanguageModel) -> [GenerationRequest] {
        plan.enumerated().map { i, p in
            GenerationRequest(id: "r\(i)", adapterSlot: p.slot,
                              prompt: fixture.tokens(model, count: 1, length: p.length, seed: 100 + UInt64(i))[0],
                              maxTokens: p.maxTokens)
        }
    }

    @Test("last-position logits (a prefill) are each sequence's last row of all the logits, bit for bit; refused without a cache",
          arguments: MultiAdapterFixture.cases)
    func lastPositionLogits(name: String, device: String) throws {
        let fixture = try MultiAdapterFixture(name)
        let model = try fixture.served(device)
        let (batch, length, vocab) = (3, 7, model.vocabularySize)
        let tokens = fixture.tokens(model, count: batch, length: length, seed: 41)
        let all = try model.forward(tokens, cache: KVCache(model: model, batch: batch, capacity: length), adapters: [0, -1, 1]).toArray()
        let last = try model.forward(tokens, cache: KVCache(model: model, batch: batch, capacity: length), adapters: [0, -1, 1], logits: .last)
        #expect(last.shape == [batch, vocab])
        var expected: [Float] = []
        for b in 1...batch { expected += all[(b * length - 1) * vocab..<(b * length * vocab)] }
        #expect(try last.toArray() == expected)
        #expect(throws: LoRAError.self) { try model.forward(tokens, cache: nil, logits: .last) }
    }

    @Test("greedy: each request equals itself generated alone with only its adapter; rows refilled as others finish",
          arguments: MultiAdapterFixture.cases)
    func greedyEqualsAlone(name: String, device: String) throws {
        let fixture = try MultiAdapterFixture(name)
        let served = try fixture.served(device)
        var requests = requests(fixture, served)
        var models: [Int: any LanguageModel] = [:]
        func alone(_ request: GenerationRequest) throws -> [Int] {
            let model = try models[request.adapterSlot] ?? fixture.alone(device, slot: request.adapterSlot)
            models[request.adapterSlot] = model
            return try model.generate(prompt: request.prompt, maxTokens: request.maxTokens, sampling: request.sampling,
                                      stop: request.stop)
        }
        // A stop token: request 1's third token alone ends it at its first occurrence.
        let unstopped = try alone(requests[1])
        requests[1].stop = [unstopped[2]]
        // A sampled request: the same seed draws the same tokens from the same logits.
        requests[6].sampling = Sampling(temperature: 0.8, topK: 5, seed: 7)

        let generator = try BatchedGenerator(model: served, maxBatch: 3)
        var finished: [Int] = []
        let results = try generator.run(requests) { index, _ in finished.append(index) }
        #expect(results.count == requests.count)
        #expect(Set(finished) == Set(requests.indices))
        for (request, result) in zip(requests, results) {
            let expected = try alone(request)
            #expect(result.id == request.id)
            #expect(result.ids == expected, "request \(request.id), slot \(request.adapterSlot)")
            let stopped = expected.count < request.maxTokens
            #expect(result.finishReason == (stopped ? .stop : .length), "request \(request.id)")
        }
        #expect(results[1].finishReason == .stop && results[1].ids == Array(unstopped.prefix(unstopped.firstIndex(of: unstopped[2])!)))
        // Batched for real: decode forwards ran several rows at once, and fewer forwards than row-tokens.
        let stats = generator.stats
        // The first step admits three prompts (5, 3 and 8 tokens): one prefill forward for them.
        #expect(stats.prefills < requests.count)
        #expect(stats.meanBatch > 1.5, "mean rows per decode forward \(stats.meanBatch)")
        // Every sampled token but the prefill's came from a decode forward.
        #expect(stats.decodedRows == results.map { $0.ids.count + ($0.finishReason == .stop ? 1 : 0) - 1 }.reduce(0, +))
    }

    @Test("prompts of different lengths and adapters admitted in one step: fewer prefill forwards, each equal to itself alone",
          arguments: MultiAdapterFixture.names)
    func prefilledTogether(name: String) throws {
        try prefillTogetherMatchesAlone(name: name, device: "cpu")
    }

    @Test("sliding window (mistral-tiny, window 4), q/k norms (qwen3-tiny), and a request that reaches the model's last position",
          arguments: ["mistral-tiny", "qwen3-tiny"].flatMap { name in TestDevices.names.map { (name, $0) } })
    func windowAndLastPosition(name: String, device: String) throws {
        let folder = fixtureRoot + "/" + name
        let load = { (adapter: Bool) throws -> any LanguageModel in
            let model = try ModelRegistry.standard.load(folder: folder, backend: testBackend(device))
            if adapter { try model.loadAdapter(folder: folder + "/adapter") }
            return model
        }
        let served = try load(false)
        try served.loadAdapter(name: "fixture", folder: folder + "/adapter")
        var generator = SeededGenerator(seed: 9)
        let limit = served.maxPositions
        let shapes = [(0, 3, 12), (-1, 9, 10), (0, limit - 4, 10), (-1, 2, 5), (0, 6, 8)]
        let requests = shapes.enumerated().map { i, shape in
            GenerationRequest(id: "\(i)", adapterSlot: shape.0,
                              prompt: (0..<shape.1).map { _ in Int(generator.next() % UInt64(served.vocabularySize)) }, maxTokens: shape.2)
        }
        let results = try BatchedGenerator(model: served, maxBatch: 3).run(requests)
        let alone = [-1: try load(false), 0: try load(true)]
        for (request, result) in zip(requests, results) {
            let expected = try alone[request.adapterSlot]!.generate(prompt: request.prompt, maxTokens: request.maxTokens)
            #expect(result.ids == expected, "request \(request.id)")
        }
        // The last position ends it: the logits at position limit − 1 give one token past the prompt's 4 more.
        #expect(results[2].ids.count == 5 && results[2].finishReason == .length)
    }

    @Test("one place: the same tokens as many places", arguments: TestDevices.names)
    func maxBatchOne(device: String) throws {
        let fixture = try MultiAdapterFixture("llama-tiny")
        let served = try fixture.served(device)
        let requests = requests(fixture, served)
        let one = try BatchedGenerator(model: served, maxBatch: 1).run(requests)
        let many = try BatchedGenerator(model: served, maxBatch: 8).run(requests)
        #expect(one == many)
    }

    @Test("weights packed for inference: the same logits and tokens bit for bit; a merge packs again; full fine-tuning drops the copies",
          arguments: MultiAdapterFixture.cases)
    func packedWeights(name: String, device: String) throws {
        let fixture = try MultiAdapterFixture(name)
        let (plain, packed) = (try fixture.served(device), try fixture.served(device))
        try packed.packWeightsForInference()
        // On the CPU the float32 output layer and every dense weight more than 16 wide get a copy; OpenCL packs nothing.
        #expect((packed.outputWeight.packing != nil) == (device == "cpu"))
        let tokens = fixture.tokens(plain, count: 3, length: 6, seed: 5)
        func logits(_ model: any LanguageModel) throws -> [UInt32] {
            try model.forward(tokens, cache: KVCache(model: model, batch: 3, capacity: 6), adapters: [0, -1, 2]).toArray().map(\.bitPattern)
        }
        #expect(try logits(plain) == logits(packed))
        let requests = requests(fixture, plain)
        #expect(try BatchedGenerator(model: plain, maxBatch: 3).run(requests) == BatchedGenerator(model: packed, maxBatch: 3).run(requests))

        let (mergedPlain, mergedPacked) = (try fixture.alone(device, slot: 2), try fixture.alone(device, slot: 2))
        try mergedPacked.packWeightsForInference()
        for model in [mergedPlain, mergedPacked] { try model.mergeAdapters() }
        let prompt = tokens[0]
        #expect(try mergedPlain.generate(prompt: prompt, maxTokens: 6) == mergedPacked.generate(prompt: prompt, maxTokens: 6))

        let full = try fixture.model(device)
        try full.packWeightsForInference()
        try full.enableFullTraining()
        #expect(full.outputWeight.packing == nil && full.linearModules.allSatisfy { $0.dense?.weight.packing == nil })
        #expect(throws: LoRAError.self) { try full.packWeightsForInference() }
    }

    @Test("bad requests: max batch below 1, an unknown slot, an empty prompt, ids outside the vocabulary, no budget")
    func badRequests() throws {
        let fixture = try MultiAdapterFixture("llama-tiny")
        let served = try fixture.served("cpu")
        #expect(throws: LoRAError.self) { try BatchedGenerator(model: served, maxBatch: 0) }
        let generator = try BatchedGenerator(model: served, maxBatch: 2)
        let good = GenerationRequest(id: "ok", prompt: [1, 2], maxTokens: 2)
        var unknown = good
        unknown.adapterSlot = 7
        #expect(throws: AdapterSlotError.unknownSlot(7, loaded: ["fixture", "second", "third"])) { try generator.run([good, unknown]) }
        for bad in [GenerationRequest(id: "e", prompt: [], maxTokens: 2),
                    GenerationRequest(id: "v", prompt: [served.vocabularySize], maxTokens: 2),
                    GenerationRequest(id: "m", prompt: [1], maxTokens: 0)] {
            #expect(throws: LoRAError.self) { try generator.run([good, bad]) }
        }
        #expect(generator.stats.prefills == 0)  // nothing ran: requests are checked first
    }
}


@Suite("OpenCL batched generation", .enabled(if: TestDevices.runOpenCL, "\(TestDevices.skipReason)"))
struct OpenCLBatchedGenerationTests {
    @Test("OpenCL prompts of different lengths and adapters admitted in one step: fewer prefill forwards, each equal to itself alone",
          arguments: MultiAdapterFixture.names)
    func prefilledTogether(name: String) throws {
        try prefillTogetherMatchesAlone(name: name, device: "opencl")
    }
}

/// Six prompts of 3 to 12 tokens, with every adapter and the base model, all admitted in the first step: greedy
/// outputs equal each request alone, with one prefill forward (left-padded rows) and, with a budget of 30 padded
/// tokens, three (3, 5, 7 | 9, 9 | 12 by length).
func prefillTogetherMatchesAlone(name: String, device: String) throws {
    let fixture = try MultiAdapterFixture(name)
    let served = try fixture.served(device)
    let plan: [(slot: Int, length: Int)] = [(0, 5), (1, 9), (-1, 3), (2, 9), (1, 12), (0, 7)]
    let requests = plan.enumerated().map { i, p in
        GenerationRequest(id: "p\(i)", adapterSlot: p.slot,
                          prompt: fixture.tokens(served, count: 1, length: p.length, seed: 300 + UInt64(i))[0], maxTokens: 6)
    }
    var expected: [[Int]] = []
    for request in requests {
        let model = try fixture.alone(device, slot: request.adapterSlot)
        expected.append(try model.generate(prompt: request.prompt, maxTokens: request.maxTokens))
    }
    for (budget, forwards) in [(2048, 1), (30, 3)] {
        let generator = try BatchedGenerator(model: served, maxBatch: 8, maxPrefillTokens: budget)
        let results = try generator.run(requests)
        for (i, result) in results.enumerated() {
            #expect(result.ids == expected[i], "\(name) on \(device), budget \(budget): request \(i) (slot \(plan[i].slot), \(plan[i].length) tokens)")
        }
        #expect(generator.stats.prefills == forwards, "budget \(budget)")
        #expect(generator.stats.decodeSteps == 5)  // all six decode together: one prefill token, five decoded
    }
}
