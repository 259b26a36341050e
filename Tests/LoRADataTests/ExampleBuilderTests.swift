// The data path against Hugging Face (Tests/Fixtures/chat-tiny and data-offsets.json, written by
// make_data_fixtures.py): token offsets of every tokenizer fixture, the ids and labels of text, prompt/completion and
// chat examples (a template with {% generation %} blocks and one without), errors that name the line, truncation;
// and the chat-tiny model's losses with those labels against transformers, on the CPU and on OpenCL.
import Foundation
import LoRATestSupport
import SwiftLoRA
import Testing

let fixtureRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures").path
let chatTiny = fixtureRoot + "/chat-tiny"

struct ExpectedExample: Decodable {
    let input_ids: [Int]
    let labels: [Int]
}

struct ExpectedData: Decodable {
    let chat_generation: [ExpectedExample]
    let chat_incremental: [ExpectedExample]
    let text: [ExpectedExample]
    let prompt_completion: [ExpectedExample]
    let chat_generation_losses: [Double]
    let chat_generation_batch_loss: Double

    static func load() throws -> ExpectedData {
        try JSONDecoder().decode(ExpectedData.self, from: Data(contentsOf: URL(fileURLWithPath: chatTiny + "/expected.json")))
    }
}

/// Writes `text` to a fresh temporary file and returns its path.
func temporaryFile(_ text: String, name: String = "data.jsonl") throws -> String {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("lora-data-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    let path = folder.appendingPathComponent(name).path
    try Data(text.utf8).write(to: URL(fileURLWithPath: path))
    return path
}

func expectSame(_ got: [TokenizedExample], _ expected: [ExpectedExample]) {
    #expect(got.count == expected.count)
    for (g, e) in zip(got, expected) {
        #expect(g.inputIDs == e.input_ids, "line \(g.line)")
        #expect(g.labels == e.labels, "line \(g.line)")
    }
}

@Suite("Token offsets against HF tokenizers")
struct TokenOffsetTests {
    struct Case: Decodable { let text: String; let ids: [Int]; let offsets: [[Int]] }

    /// Tokenizers whose pipeline deletes text (Strip, Whitespace splitting, StripAccents): refused by name.
    static let refused: Set<String> = ["tokenizers/misc-bytelevel", "tokenizers/misc-spm", "tokenizers/suffix-bpe"]

    @Test("ids and character offsets equal HF's for every tokenizer fixture it supports")
    func offsets() throws {
        let all = try JSONDecoder().decode([String: [Case]].self, from: Data(contentsOf: URL(fileURLWithPath: fixtureRoot + "/data-offsets.json")))
        #expect(all.count >= 10)
        for (folder, cases) in all.sorted(by: { $0.key < $1.key }) {
            let tokenizer = try #require(try loadTokenizer(folder: fixtureRoot + "/" + folder) as? any OffsetTokenizer)
            if Self.refused.contains(folder) {
                #expect(throws: OffsetError.self, "\(folder)") { try tokenizer.encodeWithOffsets("a b") }
                continue
            }
            for c in cases {
                let got: [TokenOffset]
                do { got = try tokenizer.encodeWithOffsets(c.text) } catch {
                    Issue.record("\(folder): \(c.text.debugDescription): \(error)")
                    continue
                }
                #expect(got.map(\.id) == c.ids, "\(folder): \(c.text.debugDescription)")
                #expect(got.map(\.id) == (try tokenizer.encode(c.text, addSpecialTokens: false)), "\(folder)")
                let chars = TokenOffset.characterOffsets(got, in: c.text).map { [$0.lowerBound, $0.upperBound] }
                #expect(chars == c.offsets, "\(folder): \(c.text.debugDescription)")
            }
        }
    }
}

@Suite("JSONL examples against HF")
struct ExampleBuilderTests {
    @Test("chat with {% generation %} blocks: apply_chat_template's ids and assistant mask")
    func generationTemplate() throws {
        let builder = try ExampleBuilder(modelFolder: chatTiny)
        #expect(builder.chat.template?.hasGenerationBlocks == true)
        #expect(builder.chat.specialTokens["bos_token"] == "<|begin_of_text|>")  // an AddedToken object in the file
        let (examples, report) = try builder.examples(file: chatTiny + "/chat.jsonl")
        expectSame(examples, try ExpectedData.load().chat_generation)
        #expect(report.examples == 5 && report.truncated == 0 && report.warnings.isEmpty)
    }

    @Test("chat without markers: the tokens each assistant message adds")
    func incrementalTemplate() throws {
        let builder = try ExampleBuilder(modelFolder: chatTiny, chatTemplate: chatTiny + "/chatml.jinja")
        #expect(builder.chat.template?.hasGenerationBlocks == false)
        expectSame(try builder.examples(file: chatTiny + "/chat.jsonl").examples, try ExpectedData.load().chat_incremental)
    }

    @Test("text and prompt/completion: BOS from the post-processor, eos appended, loss where HF puts it")
    func textAndCompletion() throws {
        let builder = try ExampleBuilder(modelFolder: chatTiny)
        let expected = try ExpectedData.load()
        expectSame(try builder.examples(file: chatTiny + "/text.jsonl").examples, expected.text)
        expectSame(try builder.examples(file: chatTiny + "/prompt_completion.jsonl").examples, expected.prompt_completion)
    }

    @Test("chat_template.jinja wins over tokenizer_config.json's chat_template, as in transformers")
    func jinjaFilePrecedence() throws {
        let folder = URL(fileURLWithPath: try temporaryFile("", name: "x")).deletingLastPathComponent().path
        for file in ["tokenizer.json", "tokenizer_config.json"] {
            try FileManager.default.copyItem(atPath: chatTiny + "/" + file, toPath: folder + "/" + file)
        }
        try FileManager.default.copyItem(atPath: chatTiny + "/chatml.jinja", toPath: folder + "/chat_template.jinja")
        let builder = try ExampleBuilder(modelFolder: folder)
        expectSame(try builder.examples(file: chatTiny + "/chat.jsonl").examples, try ExpectedData.load().chat_incremental)
    }

    @Test("errors name the file and line")
    func errors() throws {
        let builder = try ExampleBuilder(modelFolder: chatTiny)
        func failure(_ text: String) -> DataError? {
            do { _ = try builder.examples(file: try temporaryFile(text)); return nil } catch let e as DataError { return e } catch { return nil }
        }
        let good = #"{"text": "fox"}"#
        let malformed = try #require(failure(good + "\n{\"text\": \"fox\"\n"))
        #expect(malformed.line == 2 && malformed.message.contains("not valid JSON"))
        let mixed = try #require(failure(good + "\n\n" + #"{"text": "a", "prompt": "b"}"#))
        #expect(mixed.line == 3 && mixed.message.contains("match no format"))
        let unknown = try #require(failure(#"{"input": "a"}"#))
        #expect(unknown.line == 1 && unknown.message.contains("\"input\""))
        let role = try #require(failure(#"{"messages": [{"role": "tool", "content": "x"}, {"role": "assistant", "content": "y"}]}"#))
        #expect(role.line == 1 && role.message.contains("Unknown role: tool"))
        let notString = try #require(failure(#"{"prompt": 1, "completion": "b"}"#))
        #expect(notString.message.contains("\"prompt\" is not a string"))
        let empty = try #require(failure("\n\n"))
        #expect(empty.line == 0 && empty.message.contains("empty"))
        #expect(failure("{}")?.message.contains("(none)") == true)
        // A folder without a chat template cannot render messages.
        let plain = try ExampleBuilder(modelFolder: fixtureRoot + "/llama-tiny")
        do {
            _ = try plain.examples(file: try temporaryFile(#"{"messages": [{"role": "user", "content": "x"}]}"#))
            Issue.record("no error")
        } catch let e as DataError {
            #expect(e.line == 1 && e.message.contains("no chat template"))
        }
    }

    @Test("truncation left, right and drop; examples without a trained token are left out with a warning")
    func truncation() throws {
        let builder = try ExampleBuilder(modelFolder: chatTiny)
        let expected = try ExpectedData.load().chat_generation
        let file = chatTiny + "/chat.jsonl"
        let seq = 40
        let long = expected.filter { $0.input_ids.count > seq }.count
        let right = try builder.examples(file: file, seq: seq, truncation: .right)
        let left = try builder.examples(file: file, seq: seq, truncation: .left)
        let dropped = try builder.examples(file: file, seq: seq, truncation: .drop)
        #expect(long >= 2)
        #expect(dropped.report.dropped == long && dropped.examples.count == expected.count - long)
        #expect(right.report.truncated + right.report.withoutLoss >= long && left.report.truncated == long)
        for e in left.examples {
            let full = expected[e.line - 1]
            #expect(e.inputIDs == Array(full.input_ids.suffix(seq)) && e.labels == Array(full.labels.suffix(seq)))
        }
        for e in right.examples {
            let full = expected[e.line - 1]
            #expect(e.inputIDs == Array(full.input_ids.prefix(seq)) && e.labels == Array(full.labels.prefix(seq)))
        }
        // A conversation with no assistant message trains nothing: left out, with a warning naming its line.
        let path = try temporaryFile(#"{"text": "fox"}"# + "\n" + #"{"messages": [{"role": "user", "content": "hi"}]}"#)
        let (examples, report) = try builder.examples(file: path)
        #expect(examples.count == 1 && report.withoutLoss == 1)
        #expect(report.warnings.count == 1 && report.warnings[0].contains(":2:"))
    }

    @Test("assistant-mask loop: overlap, and an empty span still catches a token that straddles it")
    func maskLoop() {
        let offsets = [0..<2, 2..<5, 5..<6, 6..<9]
        #expect(ExampleBuilder.assistantMask(offsets: offsets, spans: [3..<6]) == [false, true, true, false])
        #expect(ExampleBuilder.assistantMask(offsets: offsets, spans: [7..<7]) == [false, false, false, true])
        #expect(ExampleBuilder.assistantMask(offsets: offsets, spans: [5..<5]) == [false, false, false, false])
    }
}

@Suite("Losses with labels against transformers")
struct LabeledLossTests {
    func check(_ backend: any Backend) throws {
        let expected = try ExpectedData.load()
        let model = try LlamaModel(folder: chatTiny, backend: backend)
        for (example, want) in zip(expected.chat_generation, expected.chat_generation_losses) {
            let got = try model.loss([example.input_ids], labels: [example.labels]).loss
            #expect(abs(Double(got) - want) <= 1e-5 * abs(want), "\(got) vs \(want)")
        }
        // One right-padded batch: transformers' mean over every trained target of the batch.
        let batch = LabeledBatch.padded(expected.chat_generation.map(\.input_ids), labels: expected.chat_generation.map(\.labels), padID: 4)
        let got = try model.loss(batch.tokens, labels: batch.labels).loss
        #expect(abs(Double(got) - expected.chat_generation_batch_loss) <= 1e-5 * expected.chat_generation_batch_loss)
        // The eval path batches longest first, two at a time: the same token-weighted mean.
        let mean = try model.meanLoss(expected.chat_generation.map(\.input_ids), labels: expected.chat_generation.map(\.labels),
                                      batch: 2, padID: 4)
        #expect(abs(mean.loss - expected.chat_generation_batch_loss) <= 1e-5 * expected.chat_generation_batch_loss)
        #expect(mean.predictions == expected.chat_generation.reduce(0) { $0 + $1.labels.dropFirst().filter { $0 != -100 }.count })
    }

    @Test("per-example and padded-batch chat losses equal transformers on the CPU")
    func cpu() throws { try check(CPUBackend.shared) }

    @Test("OpenCL per-example and padded-batch chat losses equal transformers", .enabled(if: TestDevices.runOpenCL, "\(TestDevices.skipReason)"))
    func openCL() throws { try check(try TestDevices.openCL.get()) }
}

@Suite("Training on labelled examples")
struct LabeledTrainingTests {
    @Test("batches are right-padded with labels -100; early stopping counts evaluations without a new best")
    func earlyStopping() throws {
        let expected = try ExpectedData.load().chat_generation
        let model = try LlamaModel(folder: chatTiny, backend: CPUBackend.shared)
        try model.applyLoRA(LoRAConfig(rank: 2, alpha: 4, targets: model.defaultLoRATargets), seed: 1)
        var data = try TrainingData(examples: expected.map(\.input_ids), labels: expected.map(\.labels), batch: 2, seed: 3, padID: 4)
        let padded = LabeledBatch.padded([[1, 2, 3], [5, 6]], labels: [[1, 2, 3], [-100, 6]], padID: 9)
        #expect(padded.tokens == [[1, 2, 3], [5, 6, 9]] && padded.labels == [[1, 2, 3], [-100, 6, -100]] && padded.realTokens == 5)
        let first = data.nextBatch()
        #expect(first.tokens.count == 2 && Set(first.tokens.map(\.count)).count == 1)
        #expect(first.labels?.map(\.count) == first.tokens.map(\.count))
        data = try TrainingData(examples: expected.map(\.input_ids), labels: expected.map(\.labels), batch: 2, seed: 3, padID: 4)
        // A learning rate of 0 leaves the eval loss where it is: the first evaluation is the best, and two more
        // without improvement stop the run at step 3 of 10.
        var options = TrainingOptions(steps: 10)
        (options.learningRate, options.evalEvery, options.earlyStoppingPatience) = (0, 1, 2)
        let trainer = try Trainer(model: model, data: data, evalData: expected.map(\.input_ids), evalLabels: expected.map(\.labels), options: options)
        var records: [StepRecord] = []
        try trainer.run { records.append($0) }
        #expect(trainer.stoppedEarly && trainer.step == 3)
        #expect(records.map(\.isBestEval) == [true, false, false])
        #expect(trainer.bestEval?.step == 1)
        let want = try ExpectedData.load()
        // B = 0 at the start: the adapter's eval loss is the base model's.
        #expect(abs(Double(records[0].evalLoss!) - want.chat_generation_batch_loss) <= 1e-5 * want.chat_generation_batch_loss)
    }
}
