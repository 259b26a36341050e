// The interpreter's own contract, beyond what the transformers fixtures show: errors name the construct and carry
// the line and column; hostile templates and data end in a `.limit` error (never a crash or a hang); generation
// spans in code points and bytes; the order-keeping JSON reader; the chat preparation transformers applies.
import Foundation
import LoRAFormats
@testable import LoRATemplates
import Testing

/// The error `body` throws, or nil.
func templateError(_ body: () throws(TemplateError) -> Void) -> TemplateError? {
    do { try body() } catch { return error }
    return nil
}

func render(_ source: String, _ context: [String: TemplateValue] = [:], limits: TemplateLimits = .default)
    throws(TemplateError) -> String {
    try Template(source, limits: limits).render(context).text
}

@Suite("Jinja interpreter")
struct InterpreterTests {
    // MARK: - Constructs

    @Test("output, conditionals, loops, set, macros and filters together")
    func constructs() throws {
        let source = """
        {%- macro item(name, price=0) -%}
        {{ name | title }}: {{ '%.2f' if false else price }}
        {%- endmacro -%}
        {%- set ns = namespace(total=0) -%}
        {%- for p in products if p.price is defined -%}
        {%- set ns.total = ns.total + p.price -%}
        {{ loop.index }}. {{ item(p.name, p.price) }}{{ ', ' if not loop.last }}
        {%- endfor %} = {{ ns.total }}
        """
        let products: TemplateValue = [["name": "red apple", "price": 2], ["name": "pear"], ["name": "fig", "price": 1.5]]
        #expect(try render(source, ["products": products]) == "1. Red Apple: 2, 2. Fig: 1.5 = 3.5")
    }

    @Test("whitespace control: trim_blocks, lstrip_blocks, '-' and '+' markers")
    func whitespace() throws {
        #expect(try render("<ul>\n  {% for x in [1, 2] %}\n  <li>{{ x }}</li>\n  {% endfor %}\n</ul>") ==
            "<ul>\n  <li>1</li>\n  <li>2</li>\n</ul>")
        #expect(try render("a  \n  {{- 'b' -}}  \n  c") == "abc")
        #expect(try render("a\n  {%+ if true %}b{% endif +%}\nc") == "a\n  b\nc")
        #expect(try render("{{ 'keep' }}\n{{ 'newline' }}") == "keep\nnewline")
        #expect(try render("x\n") == "x")
    }

    @Test("values print as Python prints them")
    func pythonPrinting() throws {
        #expect(try render("{{ [1, 2.0, 'a', none, true, (1,), {'k': \"it's\"}] }}") ==
            "[1, 2.0, 'a', None, True, (1,), {'k': \"it's\"}]")
        #expect(try render("{{ 0.1 + 0.2 }} {{ 1e22 }} {{ 1e-7 }} {{ 100.0 }} {{ 2 ** 62 }}") ==
            "0.30000000000000004 1e+22 1e-07 100.0 4611686018427387904")
        #expect(pythonFloatRepr(Double(bitPattern: 1)) == "5e-324")
        #expect(pythonFloatRepr(1.7976931348623157e308) == "1.7976931348623157e+308")
        #expect(pythonFloatRepr(123456789012345.6) == "123456789012345.6")
        #expect(pythonFloatRepr(-1234.5e-10) == "-1.2345e-07")
    }

    @Test("strings are code points, as in Python (a combining accent counts)")
    func codePoints() throws {
        let text: TemplateValue = .string("e\u{301}x")
        #expect(try render("{{ s | length }} {{ s[1:] == '\u{301}x' }} {{ s.startswith('e') }} {{ 'e' in s }}", ["s": text]) ==
            "3 True True True")
    }

    @Test("strftime_now formats the local time")
    func strftime() throws {
        let year = Calendar.current.component(.year, from: Date())
        #expect(try render("{{ strftime_now('%Y') }}") == String(year))
    }

    // MARK: - Errors with positions

    @Test("unknown filters and tests are refused when parsing, with their position")
    func unknownNames() {
        let filter = templateError { () throws(TemplateError) in _ = try Template("line one\n{{ name | shout }}") }
        #expect(filter?.kind == .unsupported)
        #expect(filter?.message == "unknown filter 'shout'")
        #expect(filter?.line == 2 && filter?.column == 11)
        let test = templateError { () throws(TemplateError) in _ = try Template("{% if x is loud %}{% endif %}") }
        #expect(test?.kind == .unsupported && test?.message == "unknown test 'loud'")
        #expect(test?.column == 12)
    }

    @Test("unsupported tags name themselves")
    func unsupportedTags() {
        for tag in ["include 'x.j2'", "extends 'base'", "import 'm' as m", "call m()", "filter upper", "block b"] {
            let e = templateError { () throws(TemplateError) in _ = try Template("ok\n  {% \(tag) %}") }
            #expect(e?.kind == .unsupported, "\(tag)")
            #expect(e?.message.contains("'{% \(tag.split(separator: " ")[0]) %}'") == true, "\(tag): \(String(describing: e))")
            #expect(e?.line == 2 && e?.column == 6)
        }
        let unknown = templateError { () throws(TemplateError) in _ = try Template("{% shout %}") }
        #expect(unknown?.kind == .syntax && unknown?.message == "unknown tag 'shout'")
    }

    @Test("syntax errors: unterminated tags, blocks, strings and comments, with positions")
    func syntaxErrors() {
        let cases: [(String, String, Int, Int)] = [
            ("a\n{{ x ", "'{{' is never closed", 2, 1),
            ("{% if x %}\nno end", "expected 'elif' or 'else' or 'endif'", 2, 7),
            ("  {% for x in y %}{% endif %}", "unknown tag 'endif'", 1, 22),
            ("{{ 'abc }}", "unterminated string", 1, 4),
            ("x {# comment", "missing end of comment tag", 1, 3),
            ("{{ (1, 2 }}", "unexpected '}', expected ')'", 1, 10),
            ("{{ 1 + }}", "unexpected 'end of print statement'", 1, 8),
            ("{% break %}", "'break' outside of a loop", 1, 4),
            ("{% raw %}never ends", "missing end of raw directive", 1, 1),
            ("{{ a b }}", "expected end of print statement, got 'b'", 1, 6),
        ]
        for (source, message, line, column) in cases {
            let e = templateError { () throws(TemplateError) in _ = try Template(source) }
            #expect(e?.kind == .syntax, "\(source.debugDescription): \(String(describing: e))")
            #expect(e?.message.contains(message) == true, "\(source.debugDescription): \(String(describing: e))")
            #expect(e?.line == line && e?.column == column, "\(source.debugDescription): \(String(describing: e))")
        }
    }

    @Test("runtime errors carry the innermost expression's position; raise_exception carries its message")
    func runtimeErrors() {
        let raised = templateError { () throws(TemplateError) in
            _ = try render("{% for m in messages %}\n  {{ raise_exception('bad role: ' ~ m.role) }}\n{% endfor %}",
                           ["messages": [["role": "narrator"]]])
        }
        #expect(raised?.kind == .raised && raised?.message == "bad role: narrator")
        #expect(raised?.line == 2)
        let undefined = templateError { () throws(TemplateError) in _ = try render("ok\n{{ 1 + user.name }}") }
        #expect(undefined?.kind == .undefined && undefined?.message == "'user' is undefined")
        #expect(undefined?.line == 2 && undefined?.column == 13)
        let type = templateError { () throws(TemplateError) in _ = try render("{{ 'a' + 1 }}") }
        #expect(type?.kind == .type && type?.message == "unsupported operand type(s) for +: 'str' and 'int'")
        let security = templateError { () throws(TemplateError) in _ = try render("{{ x.append(1) }}", ["x": []]) }
        #expect(security?.kind == .security)
        #expect(TemplateError(.raised, "m", line: 3, column: 4).description.contains("line 3, column 4"))
    }

    // MARK: - Hostile input

    @Test("deep nesting of brackets, operators, blocks and filters is refused, not a stack overflow")
    func deepNesting() {
        let sources = [
            "{{ " + String(repeating: "(", count: 5000) + "1" + String(repeating: ")", count: 5000) + " }}",
            "{{ " + String(repeating: "[", count: 5000) + String(repeating: "]", count: 5000) + " }}",
            "{{ 1" + String(repeating: " + 1", count: 100_000) + " }}",
            "{{ x" + String(repeating: " | trim", count: 100_000) + " }}",
            "{{ x" + String(repeating: ".a", count: 100_000) + " }}",
            "{{ " + String(repeating: "not ", count: 100_000) + "x }}",
            "{{ " + String(repeating: "-", count: 100_000) + "1 }}",
            String(repeating: "{% if true %}", count: 5000) + String(repeating: "{% endif %}", count: 5000),
            String(repeating: "{% for x in [1] %}", count: 5000) + String(repeating: "{% endfor %}", count: 5000),
        ]
        for source in sources {
            let e = templateError { () throws(TemplateError) in _ = try render(source) }
            #expect(e?.kind == .limit, "\(source.prefix(30)): \(String(describing: e))")
        }
    }

    @Test("huge loops, runaway strings and lists, output floods and recursion end in limit errors")
    func runawayRendering() {
        let sources = [
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
            "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
            "{% set ns = namespace(l=[1]) %}{% for i in range(64) %}{% set ns.l = ns.l + ns.l %}{% endfor %}",
            "{{ 'ab' * 100000000000 }}", "{{ [1] * 100000000000 }}",
            "{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}",
            "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
            "{{ range(1000000) | list }}",
            "{{ 'a' | indent(100000000000) }}", "{{ [1] | tojson(indent=100000000000) }}",
            "{{ ('x' * 1000000) | replace('x', 'x' * 1000) }}",
        ]
        for source in sources {
            let start = Date()
            let e = templateError { () throws(TemplateError) in _ = try render(source) }
            #expect(e?.kind == .limit, "\(source): \(String(describing: e))")
            #expect(Date().timeIntervalSince(start) < 20, "\(source) took too long")
        }
    }

    @Test("limits are adjustable and name what was exceeded")
    func adjustableLimits() {
        var small = TemplateLimits()
        small.maxLoopIterations = 10
        let loops = templateError { () throws(TemplateError) in
            _ = try render("{% for i in range(11) %}{% endfor %}", limits: small)
        }
        #expect(loops?.kind == .limit && loops?.message.contains("10 iterations") == true)
        #expect((try? render("{% for i in range(10) %}{% endfor %}", limits: small)) == "")
        small.maxTemplateLength = 5
        let length = templateError { () throws(TemplateError) in _ = try Template("123456", limits: small) }
        #expect(length?.kind == .limit)
        small = TemplateLimits()
        small.maxOutputBytes = 100
        let output = templateError { () throws(TemplateError) in _ = try render("{{ 'x' * 101 }}", limits: small) }
        #expect(output?.kind == .limit)
        small = TemplateLimits()
        small.maxSteps = 1000
        let steps = templateError { () throws(TemplateError) in
            _ = try render("{% for i in range(5000) %}{{ i }}{% endfor %}", limits: small)
        }
        #expect(steps?.kind == .limit)
    }

    @Test("on a thread with a small stack, deep recursion stops at the stack guard")
    func smallStack() throws {
        var limits = TemplateLimits()
        limits.maxDepth = 1_000_000
        limits.maxMacroDepth = 1_000_000
        let template = try Template("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", limits: limits)
        nonisolated(unsafe) var outcome: TemplateError? = nil
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            outcome = templateError { () throws(TemplateError) in _ = try template.render([:]) }
            done.signal()
        }
        thread.stackSize = 1 << 20
        thread.start()
        done.wait()
        #expect(outcome?.kind == .limit)
        #expect(outcome?.message.contains("stack") == true)
    }

    // MARK: - Generation spans

    @Test("generation spans count code points and UTF-8 bytes of the root output")
    func generationSpans() throws {
        let template = try Template("ü{% generation %}é😀{% endgeneration %}-{%- generation -%} x {% endgeneration %}")
        #expect(template.hasGenerationBlocks)
        let result = try template.render([:])
        #expect(result.text == "üé😀-x ")
        #expect(result.generationCharacterOffsets == [1..<3, 4..<6])
        #expect(result.generationUTF8Offsets == [2..<8, 9..<11])
        #expect(result.generationRanges.map { String(result.text[$0]) } == ["é😀", "x "])
        #expect(try !Template("{{ 'generation' }}").hasGenerationBlocks)
    }

    // MARK: - Data

    @Test("the JSON reader keeps key order, integers and floats apart, and refuses bad input")
    func jsonReader() throws {
        let value = try TemplateValue.parseJSON(#"{"b": 1, "a": [1.0, 2, -3e2, "\u00e9\ud83d\ude00", null, true], "b": 3}"#)
        let object = try #require(value.objectValue)
        #expect(object.keys == ["b", "a"])
        #expect(object["b"] == .int(3))
        #expect(object["a"] == [.double(1), .int(2), .double(-300), .string("é😀"), .null, .bool(true)])
        #expect(try render("{{ v | tojson }}", ["v": value]) == #"{"b": 3, "a": [1.0, 2, -300.0, "é😀", null, true]}"#)
        for bad in ["{", "[1,]", "{\"a\" 1}", "tru", "\"\u{1}\"", "1 2", String(repeating: "[", count: 100_000)] {
            #expect(throws: TemplateError.self, "\(bad.prefix(10))") { _ = try TemplateValue.parseJSON(bad) }
        }
        let json = try JSONValue.parse(Data(#"{"z": 1, "a": {"y": 2.5}}"#.utf8))
        #expect(TemplateValue(json) == ["a": ["y": 2.5], "z": 1])
        #expect(TemplateValue(json).objectValue?.keys == ["a", "z"])
    }

    @Test("chat rendering drops null keys, aliases reasoning and refuses empty or malformed conversations")
    func chatPreparation() throws {
        let prepared = ChatTemplate.prepare(["role": "assistant", "content": "x", "tool_calls": nil, "reasoning": "r"])
        #expect(prepared.keys == ["thinking", "role", "content", "reasoning", "reasoning_content"])
        #expect(prepared["thinking"] == "r" && prepared["reasoning_content"] == "r")
        let template = try ChatTemplate(source: "{% for m in messages %}{{ m.role }}:{{ m.content }}{{ m.tool_calls is defined }};{% endfor %}{{ tools }}{{ bos_token }}")
        let result = try template.render(messages: [["role": "user", "content": "hi", "tool_calls": nil]], bosToken: "<s>")
        #expect(result.text == "user:hiFalse;None<s>")
        let empty = templateError { () throws(TemplateError) in _ = try template.render(messages: []) }
        #expect(empty?.kind == .type)
        let notObject = templateError { () throws(TemplateError) in _ = try template.render(messages: ["hi"]) }
        #expect(notObject?.kind == .type && notObject?.message.contains("message 0") == true)
        let clash = templateError { () throws(TemplateError) in
            _ = try template.render(messages: [["role": "user"]], extra: ["messages": []])
        }
        #expect(clash?.kind == .type)
    }

    @Test("a long conversation renders quickly")
    func speed() throws {
        let doc = try Fixtures.load("llama3.1.json")
        let template = try ChatTemplate(source: try #require(doc["template"]?.stringValue))
        var messages: [TemplateValue] = []
        for i in 0..<500 {
            messages.append(["role": i % 2 == 0 ? "user" : "assistant", "content": .string("message \(i) " + String(repeating: "word ", count: 50))])
        }
        let start = Date()
        let result = try template.render(messages: messages, bosToken: "<s>")
        let seconds = Date().timeIntervalSince(start)
        #expect(result.text.count > 100_000)
        #expect(seconds < 5, "500 messages took \(seconds) s")
        print("llama3.1, 500 messages: \(String(format: "%.1f", seconds * 1000)) ms")
    }
}
