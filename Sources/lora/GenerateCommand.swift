// `lora generate`: text from a model (optionally with a PEFT adapter), one token at a time with a KV cache; or, with
// `--requests`, many requests over named adapters decoded together (continuous batching, GenerateRequests.swift).
import ArgumentParser
import Foundation
import SwiftLoRA

struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate", abstract: "Continue a prompt with a model (and adapter), using a KV cache; or run a file of requests over many adapters, batched.")

    @Option(help: "A Hugging Face model folder with its tokenizer.") var model: String
    @Option(help: "A PEFT LoRA adapter folder; with --requests, NAME=DIR, repeated for each adapter the requests name.")
    var adapter: [String] = []
    @Option(help: "A JSON Lines file of requests {\"id\", \"adapter\", \"prompt\" | \"prompt_ids\", \"max_tokens\", \"temperature\", \"top_k\", \"seed\", \"stop\"}, decoded together; prints one JSON line per request, in file order.")
    var requests: String?
    @Option(help: "With --requests: most requests decoded at once (a finished one's place goes to the next).") var maxBatch = 8
    @Option(help: "The text to continue (encoded without special tokens).") var prompt: String?
    @Option(help: "The prompt as comma-separated token ids, instead of --prompt.") var promptIds: String?
    @Option(help: "Most tokens to add (fewer at an end-of-sequence token or the model's last position).") var maxTokens = 64
    @Option(help: "0: always the most likely token; higher: more varied.") var temperature: Float = 0
    @Option(help: "Sample only among the k most likely tokens (0: all).") var topK = 0
    @Option(help: "Seeds the sampling.") var seed: UInt64 = 0
    @OptionGroup var device: DeviceOptions
    @OptionGroup var load: LoadOptions
    @Flag(help: "Print one JSON object {\"ids\": [new token ids], \"text\": ...} instead of streaming the text.") var json = false

    func validate() throws {
        if requests != nil {
            guard prompt == nil, promptIds == nil else { throw ValidationError("--requests replaces --prompt and --prompt-ids") }
            guard maxBatch >= 1 else { throw ValidationError("--max-batch must be at least 1, got \(maxBatch)") }
            var names = Set<String>()
            for spec in adapter {
                let (name, _) = try Self.namedAdapter(spec)
                guard names.insert(name).inserted else { throw ValidationError("--adapter: two adapters are named '\(name)'") }
            }
        } else {
            guard (prompt == nil) != (promptIds == nil) else { throw ValidationError("give exactly one of --prompt and --prompt-ids (or --requests)") }
            guard adapter.count <= 1 else { throw ValidationError("one --adapter for a single prompt; several need --requests") }
        }
        guard maxTokens >= 1 else { throw ValidationError("--max-tokens must be at least 1") }
        guard temperature >= 0, temperature.isFinite else { throw ValidationError("--temperature must be ≥ 0") }
        guard topK >= 0 else { throw ValidationError("--top-k must be ≥ 0") }
    }

    /// `--prompt-ids`: "1,2,3".
    func parsedIDs() throws -> [Int] {
        let parts = promptIds!.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        let ids = parts.map { Int($0) }
        guard !ids.isEmpty, ids.allSatisfy({ $0 != nil }) else {
            throw ValidationError("--prompt-ids takes comma-separated integers, got '\(promptIds!)'")
        }
        return ids.map { $0! }
    }

    /// `--adapter NAME=DIR` with --requests.
    static func namedAdapter(_ spec: String) throws -> (name: String, folder: String) {
        guard let equals = spec.firstIndex(of: "="), equals != spec.startIndex, spec.index(after: equals) != spec.endIndex else {
            throw ValidationError("--adapter: with --requests each adapter is NAME=DIR, got '\(spec)'")
        }
        return (String(spec[..<equals]), String(spec[spec.index(after: equals)...]))
    }

    func run() throws {
        let backend = try device.select(announce: false)
        let lm = try loadModel(model, backend: backend, options: load.options())
        if let requests { return try runRequests(requests, model: lm) }
        if let adapter = adapter.first { try lm.loadAdapter(folder: adapter) }
        try lm.packWeightsForInference()
        let tokenizer = try loadTokenizer(folder: model)
        let ids = try promptIds != nil ? parsedIDs() : tokenizer.encode(prompt!)
        guard !ids.isEmpty else { throw ValidationError("--prompt encodes to no tokens") }
        if let bad = ids.first(where: { !(0..<lm.vocabularySize).contains($0) }) {
            throw ValidationError("--prompt-ids: \(bad) is outside the vocabulary 0..<\(lm.vocabularySize)")
        }
        let stop = lm.endOfSequenceTokens.union(tokenizer.eosTokenID.map { [$0] } ?? [])
        if !json, let prompt { FileHandle.standardOutput.write(Data(prompt.utf8)) }
        var produced: [Int] = []
        var printed = ""
        let start = DispatchTime.now().uptimeNanoseconds
        // Text is printed as it forms; a token may end inside a UTF-8 character, so the decoded tail is re-read.
        _ = try lm.generate(prompt: ids, maxTokens: maxTokens,
                            sampling: Sampling(temperature: temperature, topK: topK, seed: seed), stop: stop) { token in
            produced.append(token)
            guard !json else { return }
            let text = try tokenizer.decode(produced)
            let stable = text.hasSuffix("\u{FFFD}") ? String(text.dropLast()) : text
            if stable.count > printed.count, stable.hasPrefix(printed) {
                FileHandle.standardOutput.write(Data(stable.dropFirst(printed.count).utf8))
                printed = stable
            }
        }
        let text = try tokenizer.decode(produced)
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        if json {
            print(#"{"ids": [\#(produced.map(String.init).joined(separator: ", "))], "text": \#(JSONValue.quote(text))}"#)
        } else {
            if text.hasPrefix(printed) { FileHandle.standardOutput.write(Data(text.dropFirst(printed.count).utf8)) }
            print("")
        }
        FileHandle.standardError.write(Data(String(format: "%d tokens in %.2f s (%.1f tokens/s) on %@\n",
                                                   produced.count, seconds, Double(produced.count) / seconds, backend.name).utf8))
    }

    /// `--requests`: every adapter loaded by name, every line read and checked, then all decoded together.
    func runRequests(_ path: String, model lm: any LanguageModel) throws {
        lm.maxAdapters = max(lm.maxAdapters, adapter.count)
        for spec in adapter {
            let (name, folder) = try Self.namedAdapter(spec)
            do { try lm.loadAdapter(name: name, folder: folder) } catch {
                throw ValidationError("--adapter \(name)=\(folder): \(error)")
            }
        }
        let tokenizer = try loadTokenizer(folder: model)
        let stop = lm.endOfSequenceTokens.union(tokenizer.eosTokenID.map { [$0] } ?? [])
        let file = try RequestsFile.read(path: path, model: lm, tokenizer: tokenizer, baseStop: stop, defaultMaxTokens: maxTokens)
        try lm.packWeightsForInference()
        let generator = try BatchedGenerator(model: lm, maxBatch: maxBatch) { try tokenizer.decode($0) }
        let start = DispatchTime.now().uptimeNanoseconds
        let results = try generator.run(file.map(\.request))
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        for (entry, result) in zip(file, results) {
            let adapterField = entry.adapter.map(JSONValue.quote) ?? "null"
            print(#"{"id": \#(JSONValue.quote(result.id)), "adapter": \#(adapterField), "ids": [\#(result.ids.map(String.init).joined(separator: ", "))], "text": \#(JSONValue.quote(try result.text ?? tokenizer.decode(result.ids))), "finish_reason": "\#(result.finishReason.rawValue)"}"#)
        }
        let tokens = results.map(\.ids.count).reduce(0, +), stats = generator.stats
        FileHandle.standardError.write(Data(String(
            format: "%d requests, %d tokens in %.2f s (%.1f tokens/s) on %@; %d decode steps, %.2f rows each on average\n",
            results.count, tokens, seconds, Double(tokens) / seconds, lm.backend.name, stats.decodeSteps, stats.meanBatch).utf8))
    }
}
