// LoRATemplates against transformers 5.24 + jinja2 3.1.6 (Tests/Fixtures/chat-templates, written by
// make_chat_template_fixtures.py): real chat templates rendering conversations (text and `{% generation %}` spans
// exactly, or the same error), and small snippets exercising one construct each.
import Foundation
import LoRATemplates
import Testing

enum Fixtures {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/chat-templates")

    static func load(_ name: String) throws -> TemplateObject {
        let data = try Data(contentsOf: folder.appendingPathComponent(name))
        guard case .object(let o) = try TemplateValue.parseJSON(data) else { throw FixtureError("\(name) is not an object") }
        return o
    }

    static let families = ["llama3", "llama3.1", "qwen2.5", "qwen3", "mistral-v0.1", "mistral-v0.3", "smollm2", "chatml",
                           "zephyr", "gemma", "generation-chatml", "generation-llama", "harmony-like"]

    /// The kinds a Python exception class may come out as here.
    static func kinds(forPython kind: String) -> Set<TemplateError.Kind> {
        switch kind {
        case "undefined": [.undefined]
        case "security": [.security]
        case "raised": [.raised]
        case "syntax", "SyntaxError": [.syntax, .unsupported]
        case "OverflowError": [.limit]
        default: [.type]
        }
    }
}

struct FixtureError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

extension TemplateValue {
    var int: Int? { if case .int(let i) = self { i } else { nil } }
}

@Suite("chat templates against transformers")
struct ChatTemplateFixtureTests {
    @Test("every fixture family is present and covers errors and generation spans")
    func coverage() throws {
        var errors = 0, spans = 0, cases = 0
        for family in Fixtures.families {
            let doc = try Fixtures.load(family + ".json")
            for c in doc["cases"]?.arrayValue ?? [] {
                cases += 1
                if c.objectValue?["error"] != .null { errors += 1 }
                if let s = c.objectValue?["generation_spans"]?.arrayValue, !s.isEmpty { spans += 1 }
            }
        }
        #expect(cases >= 70)
        #expect(errors >= 6)
        #expect(spans >= 6)
    }

    @Test("renders as transformers does", arguments: Fixtures.families)
    func family(_ family: String) throws {
        let doc = try Fixtures.load(family + ".json")
        let template = try ChatTemplate(source: try #require(doc["template"]?.stringValue))
        #expect(template.hasGenerationBlocks == family.hasPrefix("generation"))
        for value in try #require(doc["cases"]?.arrayValue) {
            let c = try #require(value.objectValue)
            let name = c["name"]?.stringValue ?? "?"
            var extra: [String: TemplateValue] = [:]
            for (k, v) in c["extra"]?.objectValue ?? [:] { extra[k] = v }
            let render = { () throws(TemplateError) -> RenderedTemplate in
                try template.render(messages: c["messages"]?.arrayValue ?? [], tools: c["tools"]?.arrayValue,
                                    documents: c["documents"]?.arrayValue,
                                    addGenerationPrompt: c["add_generation_prompt"] == .bool(true),
                                    bosToken: c["bos_token"]?.stringValue, eosToken: c["eos_token"]?.stringValue,
                                    extra: extra)
            }
            if let error = c["error"]?.objectValue {
                let kind = error["kind"]?.stringValue ?? ""
                do {
                    let result = try render()
                    Issue.record("\(family) / \(name): expected \(kind) error, rendered \(result.text.debugDescription)")
                } catch {
                    #expect(Fixtures.kinds(forPython: kind).contains(error.kind), "\(family) / \(name): \(error)")
                    if kind == "raised" { #expect(error.message == c["error"]?.objectValue?["message"]?.stringValue) }
                }
                continue
            }
            let expected = try #require(c["expected"]?.stringValue)
            let result: RenderedTemplate
            do {
                result = try render()
            } catch {
                Issue.record("\(family) / \(name): \(error)")
                continue
            }
            #expect(result.text == expected, "\(family) / \(name)")
            if result.text != expected { print(firstDifference(result.text, expected)) }
            let spans = (c["generation_spans"]?.arrayValue ?? []).map { pair -> Range<Int> in
                let p = pair.arrayValue ?? []
                return (p.first?.int ?? -1)..<(p.last?.int ?? -1)
            }
            #expect(result.generationCharacterOffsets == spans, "\(family) / \(name)")
            // The UTF-8 spans cover the same text.
            let scalars = Array(result.text.unicodeScalars), bytes = Array(result.text.utf8)
            for (s, u) in zip(result.generationCharacterOffsets, result.generationUTF8Offsets) {
                #expect(String(String.UnicodeScalarView(scalars[s])) == String(decoding: bytes[u], as: UTF8.self))
            }
            for (r, u) in zip(result.generationRanges, result.generationUTF8Offsets) {
                #expect(result.text[r].utf8.count == u.count)
            }
        }
    }
}

/// Where two texts first differ, for a readable failure.
func firstDifference(_ a: String, _ b: String) -> String {
    let x = Array(a.unicodeScalars), y = Array(b.unicodeScalars)
    var i = 0
    while i < min(x.count, y.count), x[i] == y[i] { i += 1 }
    func around(_ s: [Unicode.Scalar]) -> String {
        String(String.UnicodeScalarView(s[max(0, i - 30)..<min(s.count, i + 30)])).debugDescription
    }
    return "first difference at \(i):\n got      \(around(x))\n expected \(around(y))"
}

@Suite("Jinja snippets against jinja2")
struct SnippetFixtureTests {
    @Test("each snippet renders as jinja2 does, or fails the same way")
    func snippets() throws {
        let doc = try Fixtures.load("snippets.json")
        let snippets = try #require(doc["snippets"]?.arrayValue)
        #expect(snippets.count >= 100)
        for value in snippets {
            let s = try #require(value.objectValue)
            let source = try #require(s["template"]?.stringValue)
            var context: [String: TemplateValue] = [:]
            for (k, v) in s["context"]?.objectValue ?? [:] { context[k] = v }
            let outcome: Result<String, TemplateError>
            var spans: [Range<Int>] = []
            do {
                let result = try Template(source).render(context)
                spans = result.generationCharacterOffsets
                outcome = .success(result.text)
            } catch {
                outcome = .failure(error)
            }
            if let error = s["error"]?.objectValue {
                let kind = error["kind"]?.stringValue ?? ""
                switch outcome {
                case .success(let text):
                    Issue.record("\(source.debugDescription): expected \(kind), rendered \(text.debugDescription)")
                case .failure(let e):
                    #expect(Fixtures.kinds(forPython: kind).contains(e.kind), "\(source.debugDescription): \(e)")
                    #expect(e.line > 0, "\(source.debugDescription): \(e) has no position")
                    if kind == "raised" { #expect(e.message == error["message"]?.stringValue) }
                }
            } else {
                let expected = try #require(s["expected"]?.stringValue)
                switch outcome {
                case .success(let text):
                    #expect(text == expected, "\(source.debugDescription)")
                    let expectedSpans = (s["generation_spans"]?.arrayValue ?? []).map { pair -> Range<Int> in
                        let p = pair.arrayValue ?? []
                        return (p.first?.int ?? -1)..<(p.last?.int ?? -1)
                    }
                    #expect(spans == expectedSpans, "\(source.debugDescription)")
                case .failure(let e):
                    Issue.record("\(source.debugDescription): \(e), expected \(expected.debugDescription)")
                }
            }
        }
    }
}
