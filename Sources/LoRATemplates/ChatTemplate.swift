// Hugging Face chat templates: what `tokenizer.apply_chat_template(messages, tokenize=False, ...)` renders in
// transformers 5.24, and the `{% generation %}` spans `return_assistant_tokens_mask` is built from. Before rendering,
// messages are prepared as transformers prepares them: keys whose value is null are dropped, and a message's
// reasoning (`reasoning_content`, `thinking` or `reasoning`) is copied to both `thinking` and `reasoning_content`.
// The context is `messages`, `tools`, `documents` (none when not given), `add_generation_prompt`, the special
// tokens, then the extra variables (which override special tokens, as kwargs do in transformers).

/// A model's chat template (`chat_template` in tokenizer_config.json, or chat_template.jinja).
public struct ChatTemplate: Sendable {
    public let source: String
    public let template: Template

    public init(source: String, limits: TemplateLimits = .default) throws(TemplateError) {
        self.source = source
        template = try Template(source, limits: limits)
    }

    /// Whether the template marks assistant output with `{% generation %}` blocks.
    public var hasGenerationBlocks: Bool { template.hasGenerationBlocks }

    /// Renders a conversation.
    /// - Parameters:
    ///   - messages: the conversation, each an object (`role`, `content`, maybe `tool_calls`, ...).
    ///   - tools, documents: passed as `tools` / `documents`; none when nil.
    ///   - addGenerationPrompt: `add_generation_prompt`.
    ///   - bosToken, eosToken: `bos_token` / `eos_token` when given (transformers passes every special token the
    ///     tokenizer has; put others, such as `pad_token`, in `extra`).
    ///   - extra: further template variables (`date_string`, `enable_thinking`, ...).
    /// - Throws: `TemplateError`: `.raised` with the template's message when it calls `raise_exception`
    ///   (a role it rejects, roles that do not alternate), `.type` for messages that are not objects or an empty
    ///   conversation, or any rendering error.
    public func render(messages: [TemplateValue], tools: [TemplateValue]? = nil, documents: [TemplateValue]? = nil,
                       addGenerationPrompt: Bool = false, bosToken: String? = nil, eosToken: String? = nil,
                       extra: [String: TemplateValue] = [:]) throws(TemplateError) -> RenderedTemplate {
        guard !messages.isEmpty else {
            throw TemplateError(.type, "cannot apply a chat template to an empty conversation")
        }
        var prepared: [TemplateValue] = []
        for (i, message) in messages.enumerated() {
            guard case .object(let object) = message else {
                throw TemplateError(.type, "chat message \(i) is not an object")
            }
            prepared.append(.object(Self.prepare(object)))
        }
        var context: [String: TemplateValue] = [:]
        if let bosToken { context["bos_token"] = .string(bosToken) }
        if let eosToken { context["eos_token"] = .string(eosToken) }
        for (key, value) in extra {
            guard !["messages", "tools", "documents", "add_generation_prompt"].contains(key) else {
                throw TemplateError(.type, "'\(key)' is given by the chat template call itself, not as an extra variable")
            }
            context[key] = value
        }
        context["messages"] = .array(prepared)
        context["tools"] = tools.map(TemplateValue.array) ?? .null
        context["documents"] = documents.map(TemplateValue.array) ?? .null
        context["add_generation_prompt"] = .bool(addGenerationPrompt)
        return try template.render(context)
    }

    /// transformers' `_normalize_chat_messages` (drop null values) then `_alias_reasoning_fields`.
    static func prepare(_ message: TemplateObject) -> TemplateObject {
        var cleaned = TemplateObject()
        for (key, value) in message where value != .null { cleaned[key] = value }
        let reasoningFields = ["reasoning_content", "thinking", "reasoning"]
        guard let reasoning = reasoningFields.lazy.compactMap({ cleaned[$0] }).first else { return cleaned }
        // {"thinking": reasoning, **message, "reasoning_content": reasoning}
        var aliased = TemplateObject()
        aliased["thinking"] = reasoning
        for (key, value) in cleaned { aliased[key] = value }
        aliased["reasoning_content"] = reasoning
        return aliased
    }
}
