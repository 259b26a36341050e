// tokenizer.json's `post_processor`, for a single sequence: what `add_special_tokens=True` adds around the ids.
// TemplateProcessing's `single` template (Llama: `<s> $A`), Bert (`[CLS] $A [SEP]`), Roberta (`<s> $A </s>`),
// ByteLevel (offsets only: no ids) and Sequence. Without `add_special_tokens` the template's special tokens are
// left out but its `$A` pieces stay, as in HF.
import LoRAFormats

indirect enum PostProcessor {
    /// The `single` template: nil = the sequence ($A), else the ids of a special token.
    case template([[Int]?])
    /// Bert / Roberta: `first $A last`; Roberta may trim offsets (nil: no, else its `add_prefix_space`).
    case surround(first: Int, last: Int, trim: Bool?)
    /// ByteLevel: no ids; `trimOffsets` moves token offsets past their leading and trailing spaces.
    case byteLevel(trimOffsets: Bool, addPrefixSpace: Bool)
    case sequence([PostProcessor])

    init(_ field: JSONField) throws {
        switch try field.type() {
        case "TemplateProcessing":
            let special = try field.required("special_tokens")
            guard special.node.pairs != nil else { throw special.invalid("is \(special.node.kind), not an object") }
            var pieces: [[Int]?] = []
            for item in try field.required("single").array() {
                if let sequence = item.optional("Sequence") {
                    guard try sequence.required("id").string() == "A" else {
                        throw sequence.invalid("a single-sequence template can only hold sequence A")
                    }
                    pieces.append(nil)
                } else if let token = item.optional("SpecialToken") {
                    let name = try token.required("id").string()
                    guard let entry = special.optional(name) else { throw token.invalid("\(JSONValue.quote(name)) is not in special_tokens") }
                    pieces.append(try entry.required("ids").array().map { try $0.int(in: 0...Int(Int32.max)) })
                } else {
                    throw item.invalid("is neither {\"Sequence\": ...} nor {\"SpecialToken\": ...}")
                }
            }
            self = .template(pieces)
        case "BertProcessing", "RobertaProcessing":
            func id(_ key: String) throws -> Int {
                let pair = try field.required(key)
                let items = try pair.array()
                guard items.count == 2 else { throw pair.invalid("is not [token, id]") }
                return try items[1].int(in: 0...Int(Int32.max))
            }
            let trims = try field.type() == "RobertaProcessing" && field.optionalBool("trim_offsets", default: true)
            self = .surround(first: try id("cls"), last: try id("sep"),
                             trim: trims ? try field.optionalBool("add_prefix_space", default: true) : nil)
        case "ByteLevel":
            self = .byteLevel(trimOffsets: try field.optionalBool("trim_offsets", default: true),
                              addPrefixSpace: try field.optionalBool("add_prefix_space", default: true))
        case "Sequence": self = .sequence(try field.required("processors").array().map(PostProcessor.init))
        case let other: throw field.unsupported("post_processor type \(JSONValue.quote(other)) is not supported")
        }
    }

    func process(_ ids: [Int], addSpecialTokens: Bool) -> [Int] {
        switch self {
        case .byteLevel: return ids
        case .sequence(let steps): return steps.reduce(ids) { $1.process($0, addSpecialTokens: addSpecialTokens) }
        case .surround(let first, let last, _): return addSpecialTokens ? [first] + ids + [last] : ids
        case .template(let pieces):
            return pieces.flatMap { piece -> [Int] in
                guard let special = piece else { return ids }
                return addSpecialTokens ? special : []
            }
        }
    }

    /// Whether a ByteLevel or Roberta step trims token offsets past spaces (HF's `process_offsets`):
    /// nil when no step trims offsets, else that step's `add_prefix_space`.
    var offsetTrimming: Bool? {
        switch self {
        case .byteLevel(let trim, let addPrefixSpace): trim ? addPrefixSpace : nil
        case .surround(_, _, let trim): trim
        case .sequence(let steps): steps.lazy.compactMap(\.offsetTrimming).first
        default: nil
        }
    }

    /// Every id the processor can add (checked against the vocabulary when loading).
    var addedIDs: [Int] {
        switch self {
        case .byteLevel: []
        case .sequence(let steps): steps.flatMap(\.addedIDs)
        case .surround(let first, let last, _): [first, last]
        case .template(let pieces): pieces.flatMap { $0 ?? [] }
        }
    }
}
