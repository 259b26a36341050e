// `lora generate --requests FILE.jsonl`: the requests file, one JSON object a line
//   {"id", "adapter": NAME or null, "prompt": text | "prompt_ids": [ids], "max_tokens", "temperature", "top_k",
//    "seed", "stop": [token id or text, ...]}   (a text of one token stops at that token; a longer one is a stop
//    string, matched in the decoded text: the text ends before it, the ids keep every token produced)
// read and checked whole before anything runs (a bad line stops the run, naming the file, the line and the field),
// then decoded together by the library's `BatchedGenerator`; the output is one JSON line per request, in file order.
import ArgumentParser
import Foundation
import SwiftLoRA

/// One parsed line of a requests file: the engine's request and the adapter's name as written.
struct FileRequest {
    var request: GenerationRequest
    var adapter: String?
}

enum RequestsFile {
    /// Every request of `path`; blank lines are skipped. `defaultMaxTokens` fills a missing "max_tokens".
    static func read(path: String, model: any LanguageModel, tokenizer: any Tokenizer, baseStop: Set<Int>,
                     defaultMaxTokens: Int) throws -> [FileRequest] {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw ValidationError("--requests: \(path) cannot be read as UTF-8 text")
        }
        var requests: [FileRequest] = []
        var ids = Set<String>()
        for (offset, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespacesAndNewlines)
            guard !trimmed.isEmpty else { continue }
            let number = offset + 1
            func bad(_ reason: String) -> ValidationError {
                ValidationError("--requests: \(path) line \(number): \(reason) (no request was run)")
            }
            guard let object = (try? JSONValue.parse(Data(trimmed.utf8)))?.objectValue else { throw bad("not a JSON object") }
            let known: Set<String> = ["id", "adapter", "prompt", "prompt_ids", "max_tokens", "temperature", "top_k", "seed", "stop"]
            if let unknown = object.keys.sorted().first(where: { !known.contains($0) }) { throw bad("unknown field \"\(unknown)\"") }
            let id: String
            switch object["id"] {
            case .string(let s)?: id = s
            case .integer(let i)?: id = String(i)
            case nil, .null?: id = String(requests.count)
            default: throw bad("\"id\" must be a string or an integer")
            }
            guard ids.insert(id).inserted else { throw bad("\"id\" \(JSONValue.quote(id)) is used by an earlier line") }
            var adapter: String?
            var slot = -1
            switch object["adapter"] {
            case nil, .null?: break
            case .string(let name)?:
                guard let s = model.adapterSlots.slot(named: name) else {
                    let loaded = model.adapterNames
                    throw bad("\"adapter\": no adapter named '\(name)' was given with --adapter (given: \(loaded.isEmpty ? "none" : loaded.joined(separator: ", ")))")
                }
                (adapter, slot) = (name, s)
            default: throw bad("\"adapter\" must be an adapter's name or null")
            }
            let prompt: [Int]
            switch (object["prompt"], object["prompt_ids"]) {
            case (.string(let s)?, nil): prompt = try tokenizer.encode(s)
            case (nil, .array(let a)?):
                guard let parsed = Optional(a.compactMap(\.intValue)), parsed.count == a.count else { throw bad("\"prompt_ids\" must be integers") }
                prompt = parsed
            case (nil, nil), (.some, .some): throw bad("give exactly one of \"prompt\" (text) and \"prompt_ids\"")
            default: throw bad("\"prompt\" must be text and \"prompt_ids\" an array of integers")
            }
            guard !prompt.isEmpty else { throw bad("the prompt has no tokens") }
            if let outside = prompt.first(where: { !(0..<model.vocabularySize).contains($0) }) {
                throw bad("\"prompt_ids\": \(outside) is outside the vocabulary 0..<\(model.vocabularySize)")
            }
            guard prompt.count < model.maxPositions else {
                throw bad("the prompt's \(prompt.count) tokens leave no room in the model's \(model.maxPositions) positions")
            }
            func int(_ key: String, default value: Int, minimum: Int) throws -> Int {
                guard let field = object[key], field != .null else { return value }
                guard let i = field.intValue, i >= minimum else { throw bad("\"\(key)\" must be an integer ≥ \(minimum)") }
                return i
            }
            let maxTokens = try int("max_tokens", default: defaultMaxTokens, minimum: 1)
            let topK = try int("top_k", default: 0, minimum: 0)
            let seed = try int("seed", default: 0, minimum: 0)
            var temperature: Float = 0
            if let field = object["temperature"], field != .null {
                guard let t = field.doubleValue, t >= 0, t.isFinite else { throw bad("\"temperature\" must be a number ≥ 0") }
                temperature = Float(t)
            }
            var stop = baseStop
            var stopStrings: [String] = []
            switch object["stop"] {
            case nil, .null?: break
            case .array(let items)?:
                for item in items {
                    if let token = item.intValue, (0..<model.vocabularySize).contains(token) {
                        stop.insert(token)
                    } else if let s = item.stringValue, let token = try? tokenizer.encode(s), token.count == 1 {
                        stop.insert(token[0])
                    } else if let s = item.stringValue, !s.isEmpty {
                        stopStrings.append(s)  // several tokens: matched in the decoded text (StopStrings.swift)
                    } else {
                        throw bad("\"stop\": each entry must be a token id in the vocabulary or a non-empty text, got \(item.serialized())")
                    }
                }
            default: throw bad("\"stop\" must be an array of token ids or texts")
            }
            requests.append(FileRequest(
                request: GenerationRequest(id: id, adapterSlot: slot, prompt: prompt, maxTokens: maxTokens,
                                           sampling: Sampling(temperature: temperature, topK: topK, seed: UInt64(seed)), stop: stop,
                                           stopStrings: stopStrings),
                adapter: adapter))
        }
        guard !requests.isEmpty else { throw ValidationError("--requests: \(path) holds no requests") }
        return requests
    }
}
