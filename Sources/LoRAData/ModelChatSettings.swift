// What a model folder says about rendering chats: the chat template (`chat_template.jinja`, which transformers
// prefers, else `chat_template` in tokenizer_config.json: a string, or a list of {name, template} where "default" is
// the one used and "tool_use" the one for conversations with tools) and the special tokens a template sees
// (`bos_token`, `eos_token`, `unk_token`, `pad_token`: strings or AddedToken objects {"content": ...}).
import Foundation
import LoRAFormats
import LoRATemplates

/// The chat template and special-token strings of a model folder.
public struct ModelChatSettings: Sendable {
    /// The template for conversations without tools (nil: the folder has none).
    public var template: ChatTemplate?
    /// The template for conversations with tools (`tool_use` in a named list), when the folder has one.
    public var toolTemplate: ChatTemplate?
    /// Special-token strings as transformers passes them to a template (`bos_token`, `eos_token`, ...).
    public var specialTokens: [String: String]

    public init(template: ChatTemplate?, toolTemplate: ChatTemplate? = nil, specialTokens: [String: String]) {
        (self.template, self.toolTemplate, self.specialTokens) = (template, toolTemplate, specialTokens)
    }

    /// Reads `folder`'s tokenizer_config.json and chat_template.jinja; `templateFile`, when given, replaces the
    /// folder's template (a user's own `--chat-template`).
    public init(folder: String, templateFile: String? = nil) throws(DataError) {
        let configPath = folder + "/tokenizer_config.json"
        var config: [String: JSONValue] = [:]
        if FileManager.default.fileExists(atPath: configPath) {
            guard let data = FileManager.default.contents(atPath: configPath),
                  let object = (try? JSONValue.parse(data))?.objectValue else {
                throw DataError(file: configPath, "not a JSON object")
            }
            config = object
        }
        var tokens: [String: String] = [:]
        for field in ["bos_token", "eos_token", "unk_token", "pad_token"] {
            switch config[field] {
            case nil, .null?: continue
            case .string(let s)?: tokens[field] = s
            case .object(let o)? where o["content"]?.stringValue != nil: tokens[field] = o["content"]!.stringValue!
            case let other?:
                throw DataError(file: configPath, "\(field) is \(other.serialized()), not a string or {\"content\": string}")
            }
        }
        specialTokens = tokens

        func parse(_ source: String, _ path: String) throws(DataError) -> ChatTemplate {
            do { return try ChatTemplate(source: source) } catch { throw DataError(file: path, "chat template: \(error)") }
        }
        if let templateFile {
            guard let data = FileManager.default.contents(atPath: templateFile), let source = String(data: data, encoding: .utf8) else {
                throw DataError(file: templateFile, "cannot be read as UTF-8 text")
            }
            (template, toolTemplate) = (try parse(source, templateFile), nil)
            return
        }
        let jinjaPath = folder + "/chat_template.jinja"
        if FileManager.default.fileExists(atPath: jinjaPath) {
            guard let data = FileManager.default.contents(atPath: jinjaPath), let source = String(data: data, encoding: .utf8) else {
                throw DataError(file: jinjaPath, "cannot be read as UTF-8 text")
            }
            (template, toolTemplate) = (try parse(source, jinjaPath), nil)
            return
        }
        switch config["chat_template"] {
        case nil, .null?: (template, toolTemplate) = (nil, nil)
        case .string(let source)?: (template, toolTemplate) = (try parse(source, configPath), nil)
        case .array(let items)?:
            var named: [String: String] = [:]
            for item in items {
                guard let name = item.objectValue?["name"]?.stringValue, let source = item.objectValue?["template"]?.stringValue else {
                    throw DataError(file: configPath, "chat_template: a list entry is not {\"name\": string, \"template\": string}")
                }
                named[name] = source
            }
            template = try named["default"].map { source throws(DataError) in try parse(source, configPath) }
            toolTemplate = try named["tool_use"].map { source throws(DataError) in try parse(source, configPath) }
        case let other?:
            throw DataError(file: configPath, "chat_template is \(other.serialized().prefix(40)), not a string or a list of named templates")
        }
    }

    /// The template variables transformers adds from the special tokens (`bos_token`, ...).
    var templateVariables: [String: TemplateValue] { specialTokens.mapValues(TemplateValue.string) }
}
