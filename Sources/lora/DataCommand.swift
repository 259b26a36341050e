// `lora data`: what training will see of a JSONL file: each example's input ids and labels (unshifted, -100 where
// there is no loss, HF's convention), built with the model folder's tokenizer and chat template, so a user can check
// what the model will learn before spending a run on it. With --packing, the windows `lora train --packing` trains on:
// their ids, labels (each example's first -100) and position_ids (restarting at each example), as HF's
// DataCollatorWithFlattening gives them.
import ArgumentParser
import Foundation
import SwiftLoRA

struct DataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data", abstract: "Input ids and loss labels of JSONL training examples, as `lora train` will use them.",
        discussion: """
            One example a line, the format chosen by its keys: {"text"} (loss on every token, eos appended),
            {"prompt", "completion"} (loss on the completion and eos), {"messages"} with optional "tools" (rendered with
            the chat template; loss on the assistant's tokens: the {% generation %} blocks where the template has
            them, else what each assistant message adds to the rendering of the messages before it).
            """)

    @Option(help: "A model folder with a tokenizer (tokenizer.json or vocab.json + merges.txt) and, for chats, a chat template.")
    var model: String
    @Option(help: "The JSONL file.") var data: String
    @Option(help: "The most tokens an example keeps (default: no limit).") var seq: Int?
    @Option(help: "Examples longer than --seq: left (keep the end), right (keep the start) or drop.") var truncate = "right"
    @Option(help: "A Jinja chat template file to use instead of the model folder's.") var chatTemplate: String?
    @Flag(help: "Print one JSON object per example, {\"input_ids\": [...], \"labels\": [...]}, and the summary on stderr.")
    var json = false
    @Flag(help: "Pack the examples into windows of up to --seq tokens as `lora train --packing` does; with --json, one object per window with its position_ids.")
    var packing = false

    func validate() throws {
        guard Truncation(rawValue: truncate) != nil else { throw ValidationError("--truncate takes left, right or drop") }
        if let seq, seq < 2 { throw ValidationError("--seq must be at least 2") }
        if packing && seq == nil { throw ValidationError("--packing needs --seq, the window length") }
    }

    func run() throws {
        let builder = try ExampleBuilder(modelFolder: model, chatTemplate: chatTemplate)
        let (examples, report) = try builder.examples(file: data, seq: seq, truncation: Truncation(rawValue: truncate)!)
        let summary = Self.summary(of: report, file: data, seq: seq, truncation: truncate)
        if packing, let seq { return try printPacked(examples, summary: summary, seq: seq) }
        if json {
            var out = ""
            for e in examples {
                out += #"{"input_ids": [\#(e.inputIDs.map(String.init).joined(separator: ", "))], "labels": [\#(e.labels.map(String.init).joined(separator: ", "))]}"#
                out += "\n"
            }
            FileHandle.standardOutput.write(Data(out.utf8))
            FileHandle.standardError.write(Data((summary + "\n").utf8))
        } else {
            for e in examples {
                print("line \(e.line): \(e.inputIDs.count) tokens, \(e.trainedTargets) trained")
            }
            print(summary)
        }
    }

    /// `--packing`: the windows, as JSON lines (input_ids, labels, position_ids) or one line each.
    func printPacked(_ examples: [TokenizedExample], summary: String, seq: Int) throws {
        let windows = try Packing.pack(examples.map(\.inputIDs), labels: examples.map(\.labels), length: seq)
        let packedSummary = summary + "\npacked into \(windows.count) windows of up to \(seq) tokens"
        func list(_ values: [Int]) -> String { "[" + values.map(String.init).joined(separator: ", ") + "]" }
        if json {
            let out = windows.map {
                #"{"input_ids": \#(list($0.tokens)), "labels": \#(list($0.labels)), "position_ids": \#(list($0.positions))}"# + "\n"
            }.joined()
            FileHandle.standardOutput.write(Data(out.utf8))
            FileHandle.standardError.write(Data((packedSummary + "\n").utf8))
        } else {
            for (index, w) in windows.enumerated() {
                print("window \(index + 1): \(w.tokens.count) tokens, examples of \(w.lengths.map(String.init).joined(separator: " + "))")
            }
            print(packedSummary)
        }
    }

    /// One line saying what was read (and what was cut or left out), then the warnings.
    static func summary(of report: DataReport, file: String, seq: Int?, truncation: String) -> String {
        var parts: [String] = []
        if report.truncated > 0, let seq { parts.append("\(report.truncated) truncated (\(truncation)) to \(seq) tokens") }
        if report.dropped > 0, let seq { parts.append("\(report.dropped) longer than \(seq) tokens dropped") }
        if report.withoutLoss > 0 { parts.append("\(report.withoutLoss) without a trained token left out") }
        var text = "\(file): \(report.examples) examples of \(report.lines) lines" + (parts.isEmpty ? "" : "; " + parts.joined(separator: ", "))
        let shown = report.warnings.prefix(10)
        for warning in shown { text += "\nwarning: \(warning)" }
        if report.warnings.count > shown.count { text += "\n(\(report.warnings.count - shown.count) more warnings)" }
        return text
    }
}
