// `lora eval`: the mean next-token cross-entropy and perplexity of a model (optionally with a PEFT adapter) on
// token ids or on text, PyTorch's `labels = input_ids` loss: predictions at positions 0..T−2 against ids 1..T−1,
// averaged over all of them. On JSONL examples (see `lora data`), the loss of their labels: the mean over every
// trained target; with --packing, packed into windows of --seq tokens as `lora train --packing` packs them (the
// same mean: each example attends only within itself).
import ArgumentParser
import Foundation
import SwiftLoRA

struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval", abstract: "Mean next-token cross-entropy and perplexity of a model (and adapter).")

    @Option(help: "A Hugging Face model folder (config.json, safetensors weights; a tokenizer for --data).")
    var model: String
    @Option(help: "A PEFT LoRA adapter folder (adapter_config.json, adapter_model.safetensors).")
    var adapter: String?
    @Option(help: "A JSON array of equal-length arrays of token ids, or an object whose input_ids holds one.")
    var tokens: String?
    @Option(help: "A UTF-8 text file, tokenized with the model folder's tokenizer and cut into windows of --seq tokens; or .jsonl examples, scored where their labels say.")
    var data: String?
    @Option(help: "Tokens per window for --data, or the most an example keeps for .jsonl (default: the model's positions).")
    var seq: Int?
    @Option(help: "JSONL examples longer than --seq: left (keep the end), right (keep the start) or drop.") var truncate = "right"
    @Option(help: "A Jinja chat template file for {\"messages\"} data, instead of the model folder's.") var chatTemplate: String?
    @Option(help: "Sequences per forward pass.")
    var batch = 8
    @Flag(help: "Pack .jsonl examples into windows of --seq tokens (each example attends only to itself, at its own positions): the same loss in fewer, fuller rows.")
    var packing = false
    @OptionGroup var device: DeviceOptions
    @OptionGroup var load: LoadOptions
    @Flag(help: "Print one JSON object (loss, perplexity, tokens) and nothing else on stdout.")
    var json = false

    func validate() throws {
        guard (tokens == nil) != (data == nil) else { throw ValidationError("give exactly one of --tokens and --data") }
        guard batch >= 1 else { throw ValidationError("--batch must be at least 1") }
        if let seq, seq < 2 { throw ValidationError("--seq must be at least 2 (a window of one token predicts nothing)") }
        guard Truncation(rawValue: truncate) != nil else { throw ValidationError("--truncate takes left, right or drop") }
        if packing && data?.lowercased().hasSuffix(".jsonl") != true {
            throw ValidationError("--packing packs .jsonl examples; text --data is already cut into full windows of --seq tokens, and --tokens is given as rows")
        }
    }

    func run() throws {
        let backend = try device.select(announce: !json)
        let lm = try loadModel(model, backend: backend, options: load.options())
        if let adapter { try lm.loadAdapter(folder: adapter) }
        if let data, data.lowercased().hasSuffix(".jsonl") { return try evaluateExamples(data, lm: lm) }
        let sequences = try tokens.map(Self.readTokens) ?? windows(for: lm)
        let progress = json ? nil : Progress(total: (sequences.count + batch - 1) / batch)
        let loss = try lm.meanLoss(sequences, batch: batch) { done, _, loss in
            progress?.update(step: min(done, (sequences.count + batch - 1) / batch), message: String(format: "loss %.4f", loss))
        }
        progress?.finish()
        let predictions = sequences.reduce(0) { $0 + $1.count - 1 }
        guard loss.isFinite else { throw ValidationError("the loss is \(loss): the model or its inputs hold NaN or inf") }
        if json {
            print(String(format: #"{"loss": %.8g, "perplexity": %.8g, "tokens": %d}"#, loss, Foundation.exp(loss), predictions))
        } else {
            print(String(format: "loss %.6f  perplexity %.4f  (%d tokens predicted)", loss, Foundation.exp(loss), predictions))
        }
    }

    /// `--data FILE.jsonl`: the labelled examples' loss, token-weighted over every trained target.
    func evaluateExamples(_ path: String, lm: any LanguageModel) throws {
        let builder = try ExampleBuilder(modelFolder: model, chatTemplate: chatTemplate)
        let length = seq ?? lm.maxPositions
        guard length <= lm.maxPositions else { throw ValidationError("--seq \(length) exceeds the model's \(lm.maxPositions) positions") }
        let (examples, report) = try builder.examples(file: path, seq: length, truncation: Truncation(rawValue: truncate)!)
        let summary = DataCommand.summary(of: report, file: path, seq: length, truncation: truncate)
        if json { FileHandle.standardError.write(Data((summary + "\n").utf8)) } else { print(summary) }
        let rows = packing ? try Packing.pack(examples.map(\.inputIDs), labels: examples.map(\.labels), length: length).count
            : examples.count
        if packing && !json { print("packed \(examples.count) examples into \(rows) windows of up to \(length) tokens") }
        let progress = json ? nil : Progress(total: (rows + batch - 1) / batch)
        let (loss, predictions) = try lm.meanLoss(examples.map(\.inputIDs), labels: examples.map(\.labels), batch: batch,
                                                  padID: builder.padID, packing: packing ? length : nil) { done, total, loss in
            progress?.update(step: min(done, total), message: String(format: "loss %.4f", loss))
        }
        progress?.finish()
        guard loss.isFinite else { throw ValidationError("the loss is \(loss): the model or its inputs hold NaN or inf") }
        if json {
            print(String(format: #"{"loss": %.8g, "perplexity": %.8g, "tokens": %d, "examples": %d}"#, loss, Foundation.exp(loss), predictions, examples.count))
        } else {
            print(String(format: "loss %.6f  perplexity %.4f  (%d trained tokens in %d examples)", loss, Foundation.exp(loss), predictions, examples.count))
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
    func windows(for lm: any LanguageModel) throws -> [[Int]] {
        let path = data!
        let ids = try tokenizeFile(path, with: loadTokenizer(folder: model))
        let length = seq ?? lm.maxPositions
        guard length <= lm.maxPositions else {
            throw ValidationError("--seq \(length) exceeds the model's \(lm.maxPositions) positions")
        }
        let windows = stride(from: 0, to: ids.count, by: length).map { Array(ids[$0..<min(ids.count, $0 + length)]) }.filter { $0.count >= 2 }
        guard !windows.isEmpty else { throw ValidationError("\(path): \(ids.count) tokens are too few to predict any") }
        return windows
    }
}
