// `lora eval`: the mean next-token cross-entropy and perplexity of a GPT-2 (optionally with a PEFT adapter) on
// token ids or on text, PyTorch's `labels = input_ids` loss: predictions at positions 0..T−2 against ids 1..T−1,
// averaged over all of them.
import ArgumentParser
import Foundation
import SwiftLoRA

struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval", abstract: "Mean next-token cross-entropy and perplexity of a GPT-2 model (and adapter).")

    @Option(help: "A Hugging Face GPT-2 folder (config.json, model.safetensors; vocab.json and merges.txt for --data).")
    var model: String
    @Option(help: "A PEFT LoRA adapter folder (adapter_config.json, adapter_model.safetensors).")
    var adapter: String?
    @Option(help: "A JSON array of equal-length arrays of token ids, or an object whose input_ids holds one.")
    var tokens: String?
    @Option(help: "A UTF-8 text file, tokenized with the model folder's tokenizer and cut into windows of --seq tokens.")
    var data: String?
    @Option(help: "Tokens per window for --data (default: the model's positions).")
    var seq: Int?
    @Option(help: "Sequences per forward pass.")
    var batch = 8
    @OptionGroup var device: DeviceOptions
    @Flag(help: "Print one JSON object (loss, perplexity, tokens) and nothing else on stdout.")
    var json = false

    func validate() throws {
        guard (tokens == nil) != (data == nil) else { throw ValidationError("give exactly one of --tokens and --data") }
        guard batch >= 1 else { throw ValidationError("--batch must be at least 1") }
        if let seq, seq < 2 { throw ValidationError("--seq must be at least 2 (a window of one token predicts nothing)") }
    }

    func run() throws {
        let backend = try device.select(announce: !json)
        let gpt2 = try GPT2Model(folder: model, backend: backend)
        if let adapter { try gpt2.loadAdapter(folder: adapter) }
        let sequences = try tokens.map(Self.readTokens) ?? windows(for: gpt2)
        var (total, predictions) = (0.0, 0)
        let progress = json ? nil : Progress(total: (sequences.count + batch - 1) / batch)
        for (index, start) in stride(from: 0, to: sequences.count, by: batch).enumerated() {
            let group = Array(sequences[start..<min(sequences.count, start + batch)])
            // Windows of text may end shorter: a group holds one length.
            for part in Dictionary(grouping: group, by: \.count).values.sorted(by: { $0[0].count > $1[0].count }) {
                let count = part.count * (part[0].count - 1)
                total += Double(try gpt2.loss(part)) * Double(count)
                predictions += count
            }
            progress?.update(step: index + 1, message: String(format: "loss %.4f", total / Double(max(predictions, 1))))
        }
        progress?.finish()
        let loss = total / Double(predictions)
        guard loss.isFinite else { throw ValidationError("the loss is \(loss): the model or its inputs hold NaN or inf") }
        if json {
            print(String(format: #"{"loss": %.8g, "perplexity": %.8g, "tokens": %d}"#, loss, Foundation.exp(loss), predictions))
        } else {
            print(String(format: "loss %.6f  perplexity %.4f  (%d tokens predicted)", loss, Foundation.exp(loss), predictions))
        }
    }

    /// `--tokens`: a JSON array of equal-length arrays of ids, or `{"input_ids": [[...], ...]}`.
    static func readTokens(_ path: String) throws -> [[Int]] {
        guard let data = FileManager.default.contents(atPath: path) else { throw ValidationError("\(path): cannot be read") }
        guard var root = try? JSONValue.parse(data) else { throw ValidationError("\(path): not JSON") }
        if let ids = root.objectValue?["input_ids"] { root = ids }
        guard let rows = root.arrayValue?.map({ $0.arrayValue?.map(\.intValue) }), !rows.isEmpty,
              rows.allSatisfy({ $0 != nil && $0!.allSatisfy { $0 != nil } }) else {
            throw ValidationError("\(path): expected a non-empty array of arrays of integer token ids (or an object with input_ids)")
        }
        let sequences = rows.map { $0!.map { $0! } }
        guard Set(sequences.map(\.count)).count == 1, sequences[0].count >= 2 else {
            throw ValidationError("\(path): sequences must share one length of at least 2 tokens")
        }
        return sequences
    }

    /// `--data`: the text's tokens cut into windows of `--seq` (the last may be shorter, if it predicts anything).
    func windows(for gpt2: GPT2Model) throws -> [[Int]] {
        let path = data!
        guard let bytes = FileManager.default.contents(atPath: path) else { throw ValidationError("\(path): cannot be read") }
        guard let text = String(data: bytes, encoding: .utf8) else { throw ValidationError("\(path): not UTF-8 text") }
        let ids = try GPT2Tokenizer(folder: model).encode(text)
        let length = seq ?? gpt2.config.positions
        guard length <= gpt2.config.positions else {
            throw ValidationError("--seq \(length) exceeds the model's \(gpt2.config.positions) positions")
        }
        let windows = stride(from: 0, to: ids.count, by: length).map { Array(ids[$0..<min(ids.count, $0 + length)]) }.filter { $0.count >= 2 }
        guard !windows.isEmpty else { throw ValidationError("\(path): \(ids.count) tokens are too few to predict any") }
        return windows
    }
}
