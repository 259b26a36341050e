// `lora generate`: text from a GPT-2 (optionally with a PEFT adapter), one token at a time with a KV cache.
import ArgumentParser
import Foundation
import SwiftLoRA

struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate", abstract: "Continue a prompt with a GPT-2 model (and adapter), using a KV cache.")

    @Option(help: "A Hugging Face GPT-2 folder with vocab.json and merges.txt.") var model: String
    @Option(help: "A PEFT LoRA adapter folder.") var adapter: String?
    @Option(help: "The text to continue.") var prompt: String
    @Option(help: "Most tokens to add (fewer at <|endoftext|> or the model's last position).") var maxTokens = 64
    @Option(help: "0: always the most likely token; higher: more varied.") var temperature: Float = 0
    @Option(help: "Sample only among the k most likely tokens (0: all).") var topK = 0
    @Option(help: "Seeds the sampling.") var seed: UInt64 = 0
    @OptionGroup var device: DeviceOptions

    func validate() throws {
        guard maxTokens >= 1 else { throw ValidationError("--max-tokens must be at least 1") }
        guard temperature >= 0, temperature.isFinite else { throw ValidationError("--temperature must be ≥ 0") }
        guard topK >= 0 else { throw ValidationError("--top-k must be ≥ 0") }
    }

    func run() throws {
        let backend = try device.select(announce: false)
        let gpt2 = try GPT2Model(folder: model, backend: backend)
        if let adapter { try gpt2.loadAdapter(folder: adapter) }
        let tokenizer = try GPT2Tokenizer(folder: model)
        let ids = try tokenizer.encode(prompt)
        guard !ids.isEmpty else { throw ValidationError("--prompt is empty") }
        FileHandle.standardOutput.write(Data(prompt.utf8))
        var produced: [Int] = []
        var printed = ""
        let start = DispatchTime.now().uptimeNanoseconds
        // Text is printed as it forms; a token may end inside a UTF-8 character, so the decoded tail is re-read.
        _ = try gpt2.generate(prompt: ids, maxTokens: maxTokens,
                              sampling: Sampling(temperature: temperature, topK: topK, seed: seed), stop: tokenizer.endOfText) { token in
            produced.append(token)
            let text = try tokenizer.decode(produced)
            let stable = text.hasSuffix("\u{FFFD}") ? String(text.dropLast()) : text
            if stable.count > printed.count, stable.hasPrefix(printed) {
                FileHandle.standardOutput.write(Data(stable.dropFirst(printed.count).utf8))
                printed = stable
            }
        }
        let text = try tokenizer.decode(produced)
        if text.hasPrefix(printed) { FileHandle.standardOutput.write(Data(text.dropFirst(printed.count).utf8)) }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        print("")
        FileHandle.standardError.write(Data(String(format: "%d tokens in %.2f s (%.1f tokens/s) on %@\n",
                                                   produced.count, seconds, Double(produced.count) / seconds, backend.name).utf8))
    }
}
