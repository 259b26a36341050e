// The incremental form of batched generation (submit, step, cancel): requests submitted while others decode, rows
// freed by cancellation, and text with stop strings, each request still equal to itself generated alone.
import Foundation
import LoRATestSupport
import SwiftLoRA
import Testing

@Suite("Incremental batched generation")
struct IncrementalGenerationTests {
    @Test("requests submitted mid-run and cancelled ones: the others equal themselves alone, tokens reported one by one")
    func submitAndCancel() throws {
        let fixture = try MultiAdapterFixture("llama-tiny")
        let served = try fixture.served("cpu")
        let generator = try BatchedGenerator(model: served, maxBatch: 2)
        func request(_ i: Int, slot: Int, length: Int, maxTokens: Int) -> GenerationRequest {
            GenerationRequest(id: "r\(i)", adapterSlot: slot, prompt: fixture.tokens(served, count: 1, length: length, seed: 300 + UInt64(i))[0],
                              maxTokens: maxTokens)
        }
        var requests = [request(0, slot: 0, length: 4, maxTokens: 12), request(1, slot: 2, length: 6, maxTokens: 10),
                        request(2, slot: -1, length: 3, maxTokens: 9)]
        var tickets = try requests.map { try generator.submit($0) }
        var tokens: [Int: [Int]] = [:], results: [Int: GenerationResult] = [:]
        func step() throws {
            try generator.step { event in
                switch event {
                case .token(let ticket, let token, let text):
                    #expect(results[ticket] == nil && text.isEmpty)  // no decoder: no text
                    tokens[ticket, default: []].append(token)
                case .finished(let ticket, let result, _): results[ticket] = result
                }
            }
        }
        try step()
        try step()
        #expect(generator.activeCount == 2 && generator.waitingCount == 1)
        // Mid-run: two more arrive; one active and one waiting request are cancelled.
        requests += [request(3, slot: 1, length: 5, maxTokens: 8), request(4, slot: 0, length: 7, maxTokens: 6)]
        tickets += try requests[3...].map { try generator.submit($0) }
        #expect(generator.cancel(tickets[1]) && generator.cancel(tickets[3]))
        #expect(!generator.cancel(tickets[3]))
        #expect(generator.activeCount == 1 && generator.waitingCount == 2)
        let cancelledTokens = tokens[tickets[1]] ?? []
        while generator.hasWork { try step() }
        #expect(tokens[tickets[1]] ?? [] == cancelledTokens && results[tickets[1]] == nil && results[tickets[3]] == nil)
        for i in [0, 2, 4] {
            let r = requests[i]
            let alone = try fixture.alone("cpu", slot: r.adapterSlot).generate(prompt: r.prompt, maxTokens: r.maxTokens)
            #expect(results[tickets[i]]?.ids == alone, "request \(i)")
            #expect(tokens[tickets[i]] == alone, "request \(i)")
            #expect(results[tickets[i]]?.text == nil)
        }
    }

    @Test("with a decoder: text per token and at the end adds up to the result's text, cut before a stop string")
    func textAndStopStrings() throws {
        let fixture = try MultiAdapterFixture("llama-tiny")
        let served = try fixture.served("cpu")
        let tokenizer = try loadTokenizer(folder: fixture.folder)
        let decode = { (ids: [Int]) throws -> String in try tokenizer.decode(ids) }
        let prompt = fixture.tokens(served, count: 1, length: 5, seed: 77)[0]
        let full = try fixture.alone("cpu", slot: 1).generate(prompt: prompt, maxTokens: 30)
        let text = try decode(full)
        // Two scalars from the middle of the greedy text as the stop string (not U+FFFD: a partial character).
        let scalars = Array(text.unicodeScalars)
        let start = try #require((3..<scalars.count - 1).first { scalars[$0] != "\u{FFFD}" && scalars[$0 + 1] != "\u{FFFD}" })
        let stop = String(String.UnicodeScalarView(scalars[start...start + 1]))
        let expected = String(text[..<text.range(of: stop)!.lowerBound])
        let through = try #require((1...full.count).first { try decode(Array(full.prefix($0))).contains(stop) })

        let generator = try BatchedGenerator(model: served, maxBatch: 3, decode: decode)
        let requests = [GenerationRequest(id: "stop", adapterSlot: 1, prompt: prompt, maxTokens: 30, stopStrings: ["never here", stop]),
                        GenerationRequest(id: "plain", adapterSlot: 1, prompt: prompt, maxTokens: 30)]
        var shown: [Int: String] = [:]
        for request in requests { try generator.submit(request) }
        var results: [Int: GenerationResult] = [:]
        while generator.hasWork {
            try generator.step { event in
                switch event {
                case .token(let ticket, _, let text): shown[ticket, default: ""] += text
                case .finished(let ticket, let result, let text):
                    shown[ticket, default: ""] += text
                    results[ticket] = result
                }
            }
        }
        #expect(results[0]?.text == expected && shown[0] == expected, "stop \(stop) in \(text)")
        #expect(results[0]?.finishReason == .stop && results[0]?.ids == Array(full.prefix(through)))
        #expect(results[1]?.text == text && shown[1] == text && results[1]?.ids == full)
        // Stop strings need a decoder.
        #expect(throws: LoRAError.self) { try BatchedGenerator(model: served, maxBatch: 1).submit(requests[0]) }
    }
}
