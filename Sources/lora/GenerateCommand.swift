// `lora generate`: text from a model (optionally with a PEFT adapter), one token at a time with a KV cache.
import ArgumentParser
import Foundation
import SwiftLoRA

struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate", abstract: "Continue a prompt with a model (and adapter), using a KV cache.")

    @Option(help: "A Hugging Face model folder with its tokenizer.") var model: String
    @Option(help: "A PEFT LoRA adapter folder.") var adapter: String?
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
        guard (prompt == nil) != (promptIds == nil) else { throw ValidationError("give exactly one of --prompt and --prompt-ids") }
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

    func run() throws {
        let backend = try device.select(announce: false)
        let lm = try loadModel(model, backend: backend, options: load.options())
        if let adapter { try lm.loadAdapter(folder: adapter) }
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
}
