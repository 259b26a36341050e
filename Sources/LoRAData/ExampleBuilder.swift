// JSONL training examples to token ids and labels, as Hugging Face computes them. One example a line; its keys
// choose the format:
//   {"text"}                  encode(text) + [eos]; loss on every token.
//   {"prompt", "completion"}  encode(prompt) + encode(completion) + [eos]; loss on the completion and eos.
//   {"messages"[, "tools"]}   the chat template's rendering, tokenized as transformers' apply_chat_template does
//                             (add_special_tokens=False: special-token text in the rendering becomes those tokens);
//                             loss on the assistant's tokens (below).
// `encode` of text and prompt is HF's add_special_tokens=True (BOS where the post-processor adds one); completions
// add nothing. Labels are unshifted (the model predicts labels[t + 1] at t) and -100 where there is no loss.
//
// Assistant tokens. With `{% generation %}` blocks in the template: the tokens whose offsets overlap a block's
// output, exactly transformers 5.24's `return_assistant_tokens_mask` loop. Without: for each assistant message i,
// the text render(messages[:i+1]) adds after its longest common prefix with render(messages[:i],
// add_generation_prompt=True) (the role header the generation prompt writes is prompt, as in TRL's and mlx-lm's
// prompt/completion split), located in the whole conversation's rendering (which must start with
// render(messages[:i+1]); templates that rewrite earlier turns need generation blocks) and mapped to tokens by the
// same overlap rule.
import Foundation
import LoRAFormats
import LoRATemplates
import LoRATokenizers

/// One training example: ids and unshifted labels of the same length (-100: no loss), and the line it came from.
public struct TokenizedExample: Sendable, Equatable {
    public var inputIDs: [Int]
    public var labels: [Int]
    /// 1-based line in its file (0 when built from a value).
    public var line: Int

    public init(inputIDs: [Int], labels: [Int], line: Int = 0) {
        precondition(inputIDs.count == labels.count, "ids (\(inputIDs.count)) and labels (\(labels.count)) differ in length")
        (self.inputIDs, self.labels, self.line) = (inputIDs, labels, line)
    }

    /// Targets the loss scores: labels after the first position that are not -100.
    public var trainedTargets: Int { labels.dropFirst().filter { $0 != -100 }.count }
}

/// What to do with an example longer than the sequence length.
public enum Truncation: String, Sendable, CaseIterable {
    /// Keep the last tokens (the end of a conversation, where the answer is).
    case left
    /// Keep the first tokens.
    case right
    /// Leave the example out.
    case drop
}

/// What reading a file did besides producing examples.
public struct DataReport: Sendable, Equatable {
    public var lines = 0
    public var examples = 0
    public var truncated = 0
    public var dropped = 0
    /// Examples left out because no target is trained (a conversation with no assistant message, say).
    public var withoutLoss = 0
    /// One line per problem that did not stop the read, naming its line.
    public var warnings: [String] = []

    public init() {}
}

/// Turns JSONL lines into examples with a model folder's tokenizer and chat template.
public struct ExampleBuilder: Sendable {
    public let tokenizer: any OffsetTokenizer
    public let chat: ModelChatSettings
    public let eosID: Int
    /// What a batch's shorter examples are padded with: `pad_token` when the folder names one, else eos (the value
    /// never matters to the loss: padding comes after every real token and its labels are -100).
    public var padID: Int { chat.specialTokens["pad_token"].flatMap(tokenizer.id(of:)) ?? eosID }

    public init(tokenizer: any OffsetTokenizer, chat: ModelChatSettings) throws(DataError) {
        guard let eos = tokenizer.eosTokenID else {
            throw DataError(file: "tokenizer_config.json", "names no eos_token, which every example ends with")
        }
        (self.tokenizer, self.chat, eosID) = (tokenizer, chat, eos)
    }

    /// The tokenizer and chat settings of a model folder; `chatTemplate` replaces the folder's template.
    public init(modelFolder: String, chatTemplate: String? = nil) throws {
        guard let tokenizer = try loadTokenizer(folder: modelFolder) as? any OffsetTokenizer else {
            throw DataError(file: modelFolder, "its tokenizer cannot give token offsets")
        }
        try self.init(tokenizer: tokenizer, chat: ModelChatSettings(folder: modelFolder, templateFile: chatTemplate))
    }

    // MARK: - Files

    /// Every example of a JSONL file. Blank lines are skipped; a line that is not a JSON object of a known format,
    /// or that a template rejects, is an error naming it. With `seq`, longer examples are truncated (or dropped)
    /// as `truncation` says; examples with no trained target are left out with a warning.
    public func examples(file: String, seq: Int? = nil, truncation: Truncation = .right) throws(DataError) -> (examples: [TokenizedExample], report: DataReport) {
        guard let data = FileManager.default.contents(atPath: file) else { throw DataError(file: file, "cannot be read") }
        guard let text = String(data: data, encoding: .utf8) else { throw DataError(file: file, "not UTF-8 text") }
        var report = DataReport()
        var out: [TokenizedExample] = []
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = index + 1
            let trimmed = raw.trimmingCharacters(in: .whitespacesAndNewlines)
            if trimmed.isEmpty { continue }
            report.lines += 1
            let value: TemplateValue
            do { value = try TemplateValue.parseJSON(String(trimmed)) } catch {
                throw DataError(file: file, line: line, "not valid JSON: \(error.message)")
            }
            var example: TokenizedExample
            do { example = try self.example(value) } catch let error as DataError {
                throw DataError(file: file, line: line, error.message)
            } catch {
                throw DataError(file: file, line: line, "\(error)")
            }
            example.line = line
            var wasTruncated = false
            if let seq, example.inputIDs.count > seq {
                switch truncation {
                case .drop:
                    report.dropped += 1
                    continue
                case .left:
                    example = TokenizedExample(inputIDs: Array(example.inputIDs.suffix(seq)), labels: Array(example.labels.suffix(seq)), line: line)
                case .right:
                    example = TokenizedExample(inputIDs: Array(example.inputIDs.prefix(seq)), labels: Array(example.labels.prefix(seq)), line: line)
                }
                report.truncated += 1
                wasTruncated = true
            }
            guard example.trainedTargets > 0 else {
                report.withoutLoss += 1
                report.warnings.append("\(file):\(line): no token is trained on (\(example.inputIDs.count) tokens, every label -100\(wasTruncated ? " after truncation" : "")); left out")
                continue
            }
            out.append(example)
        }
        guard report.lines > 0 else { throw DataError(file: file, "is empty: no examples") }
        guard !out.isEmpty else { throw DataError(file: file, "none of its \(report.lines) examples has a token to train on") }
        report.examples = out.count
        return (out, report)
    }

    // MARK: - One example

    /// The example of one JSONL line's value.
    public func example(_ value: TemplateValue) throws -> TokenizedExample {
        guard case .object(let object) = value else { throw DataError(file: "", "is not a JSON object") }
        let keys = Set(object.keys)
        switch keys {
        case ["text"]:
            return try textExample(try string(object, "text"))
        case ["prompt", "completion"]:
            return try promptCompletionExample(prompt: try string(object, "prompt"), completion: try string(object, "completion"))
        case ["messages"], ["messages", "tools"]:
            guard case .array(let messages)? = object["messages"] else { throw DataError(file: "", "\"messages\" is not an array") }
            var tools: [TemplateValue]? = nil
            if let value = object["tools"], value != .null {
                guard case .array(let list) = value else { throw DataError(file: "", "\"tools\" is not an array") }
                tools = list
            }
            return try chatExample(messages: messages, tools: tools)
        default:
            let listed = object.keys.map { "\"\($0)\"" }.joined(separator: ", ")
            throw DataError(file: "", "keys \(listed.isEmpty ? "(none)" : listed) match no format: give {\"text\"}, {\"prompt\", \"completion\"} or {\"messages\"} (with \"tools\" optional)")
        }
    }

    private func string(_ object: TemplateObject, _ key: String) throws -> String {
        guard case .string(let s)? = object[key] else { throw DataError(file: "", "\"\(key)\" is not a string") }
        return s
    }

    /// encode(text) + [eos], every label kept.
    public func textExample(_ text: String) throws -> TokenizedExample {
        let ids = try tokenizer.encode(text, addSpecialTokens: true) + [eosID]
        return TokenizedExample(inputIDs: ids, labels: ids)
    }

    /// encode(prompt) + encode(completion) + [eos], loss on the completion and eos.
    public func promptCompletionExample(prompt: String, completion: String) throws -> TokenizedExample {
        let promptIDs = try tokenizer.encode(prompt, addSpecialTokens: true)
        let completionIDs = try tokenizer.encode(completion, addSpecialTokens: false) + [eosID]
        return TokenizedExample(inputIDs: promptIDs + completionIDs,
                                labels: [Int](repeating: -100, count: promptIDs.count) + completionIDs)
    }

    /// A conversation rendered with the chat template, loss on the assistant's tokens.
    public func chatExample(messages: [TemplateValue], tools: [TemplateValue]? = nil) throws -> TokenizedExample {
        guard let template = (tools != nil ? chat.toolTemplate : nil) ?? chat.template else {
            throw DataError(file: "", "the model folder has no chat template (chat_template in tokenizer_config.json, or chat_template.jinja); give one with --chat-template")
        }
        for (i, message) in messages.enumerated() {
            guard case .object(let m) = message, case .string? = m["role"] else {
                throw DataError(file: "", "message \(i) is not an object with a string \"role\"")
            }
        }
        let whole = try render(template, messages, tools: tools, generationPrompt: false)
        let spans: [Range<Int>]
        if template.hasGenerationBlocks {
            spans = whole.generationCharacterOffsets
        } else {
            spans = try assistantSpans(template, messages, tools: tools, whole: whole.text)
        }
        let tokens = try tokenizer.encodeWithOffsets(whole.text)
        let ids = tokens.map(\.id)
        let mask = Self.assistantMask(offsets: TokenOffset.characterOffsets(tokens, in: whole.text), spans: spans)
        return TokenizedExample(inputIDs: ids, labels: zip(ids, mask).map { $1 ? $0 : -100 })
    }

    /// transformers 5.24's assistant-mask loop: a token is masked when its character offsets overlap a span
    /// (spans in order; an empty span still catches a token that straddles it, as there).
    public static func assistantMask(offsets: [Range<Int>], spans: [Range<Int>]) -> [Bool] {
        var mask = [Bool](repeating: false, count: offsets.count)
        var span = 0
        for (i, offset) in offsets.enumerated() {
            while span < spans.count && offset.lowerBound >= spans[span].upperBound { span += 1 }
            if span == spans.count { break }
            if offset.upperBound > spans[span].lowerBound { mask[i] = true }
        }
        return mask
    }

    /// The character span each assistant message adds (see the file header).
    private func assistantSpans(_ template: ChatTemplate, _ messages: [TemplateValue], tools: [TemplateValue]?, whole: String) throws -> [Range<Int>] {
        let wholeScalars = Array(whole.unicodeScalars)
        var spans: [Range<Int>] = []
        for (i, message) in messages.enumerated() {
            guard case .object(let m) = message, m["role"] == .string("assistant") else { continue }
            let before = Array(try render(template, Array(messages[..<i]), tools: tools, generationPrompt: true).text.unicodeScalars)
            let upTo = Array(try render(template, Array(messages[...i]), tools: tools, generationPrompt: false).text.unicodeScalars)
            guard upTo.count <= wholeScalars.count, wholeScalars[..<upTo.count].elementsEqual(upTo) else {
                throw DataError(file: "", "the chat template renders the conversation up to message \(i) differently from the whole conversation, so the assistant's tokens cannot be told apart; use a template with {% generation %} blocks")
            }
            var common = 0
            while common < min(before.count, upTo.count) && before[common] == upTo[common] { common += 1 }
            spans.append(common..<upTo.count)
        }
        return spans
    }

    /// The template's rendering, with the special tokens as transformers passes them; an empty conversation (the
    /// messages before a first assistant message) is rendered too, as the template would see it.
    private func render(_ template: ChatTemplate, _ messages: [TemplateValue], tools: [TemplateValue]?, generationPrompt: Bool) throws -> RenderedTemplate {
        do {
            if messages.isEmpty {
                var context = chat.templateVariables
                context["messages"] = .array([])
                context["tools"] = tools.map(TemplateValue.array) ?? .null
                context["documents"] = .null
                context["add_generation_prompt"] = .bool(generationPrompt)
                return try template.template.render(context)
            }
            return try template.render(messages: messages, tools: tools, addGenerationPrompt: generationPrompt, extra: chat.templateVariables)
        } catch {
            if error.kind == .raised { throw DataError(file: "", "the chat template rejected the conversation: \(error.message)") }
            throw DataError(file: "", "the chat template failed: \(error)")
        }
    }
}
