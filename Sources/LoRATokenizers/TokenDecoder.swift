// tokenizer.json's `decoder`: turns the tokens of some ids back into text, as HF's `decode_chain` (each decoder
// maps a list of token strings to a new list; the results are concatenated). ByteLevel (symbols → bytes →
// UTF-8, invalid sequences as U+FFFD), Metaspace, Replace, ByteFallback (`<0xNN>` runs → UTF-8, or one U+FFFD
// per byte when invalid), Fuse, Strip, BPEDecoder (word suffix) and Sequence; WordPiece and CTC are refused by name.
import LoRAFormats

indirect enum TokenDecoder {
    case byteLevel
    case metaspace(replacement: Unicode.Scalar, prepend: PrependScheme)
    case replace(TextPattern, String)
    case byteFallback, fuse
    /// BPEDecoder: `suffix` becomes a space, or nothing in the last token.
    case wordSuffix(String)
    case strip(Unicode.Scalar, start: Int, stop: Int)
    case sequence([TokenDecoder])

    init(_ field: JSONField) throws {
        switch try field.type() {
        case "ByteLevel": self = .byteLevel
        case "Metaspace":
            let (replacement, prepend) = try PreTokenizer.metaspaceSettings(field)
            self = .metaspace(replacement: replacement, prepend: prepend)
        case "Replace": self = .replace(try TextPattern(field.required("pattern")), try field.required("content").string())
        case "ByteFallback": self = .byteFallback
        case "Fuse": self = .fuse
        case "BPEDecoder": self = .wordSuffix(try field.optional("suffix")?.string() ?? "</w>")
        case "Strip":
            self = .strip(try field.required("content").scalar(), start: try field.required("start").int(in: 0...1 << 20),
                          stop: try field.required("stop").int(in: 0...1 << 20))
        case "Sequence": self = .sequence(try field.required("decoders").array().map(TokenDecoder.init))
        case let other: throw field.unsupported("decoder type \(JSONValue.quote(other)) is not supported")
        }
    }

    func decodeChain(_ tokens: [String]) -> [String] {
        switch self {
        case .sequence(let decoders): return decoders.reduce(tokens) { $1.decodeChain($0) }
        case .fuse: return [tokens.joined()]
        case .wordSuffix(let suffix):
            guard !suffix.isEmpty else { return tokens }
            let pattern = TextPattern.literal(Array(suffix.unicodeScalars))
            return tokens.enumerated().map { pattern.replaceMatches(in: $1, with: $0 == tokens.count - 1 ? "" : " ") }
        case .byteLevel:
            var bytes: [UInt8] = []
            for token in tokens {
                let mapped = token.unicodeScalars.compactMap { Self.symbolBytes[$0.value] }
                bytes += mapped.count == token.unicodeScalars.count ? mapped : Array(token.utf8)
            }
            return [String(decoding: bytes, as: UTF8.self)]
        case .metaspace(let replacement, let prepend):
            return tokens.enumerated().map { index, token in
                var out = String.UnicodeScalarView()
                for scalar in token.unicodeScalars {
                    if scalar != replacement { out.append(scalar) }
                    else if index != 0 || prepend == .never { out.append(" ") }
                }
                return String(out)
            }
        case .replace(let pattern, let content):
            return tokens.map { pattern.replaceMatches(in: $0, with: content) }
        case .byteFallback:
            var out: [String] = [], pending: [UInt8] = []
            func flush() {
                guard !pending.isEmpty else { return }
                if let s = String(validating: pending, as: UTF8.self) { out.append(s) }
                else { out += Array(repeating: "\u{FFFD}", count: pending.count) }
                pending.removeAll()
            }
            for token in tokens {
                if let byte = Self.fallbackByte(token) { pending.append(byte); continue }
                flush()
                out.append(token)
            }
            flush()
            return out
        case .strip(let content, let start, let stop):
            return tokens.map { token in
                let scalars = Array(token.unicodeScalars)
                var startCut = 0
                for i in 0..<min(start, scalars.count) {
                    guard scalars[i] == content else { break }
                    startCut = i + 1
                }
                var stopCut = scalars.count
                for i in 0..<min(stop, scalars.count) {
                    let index = scalars.count - i - 1
                    guard scalars[index] == content else { break }
                    stopCut = index
                }
                return startCut < stopCut ? String(scalars: scalars[startCut..<stopCut]) : ""
            }
        }
    }

    /// The byte of a `<0xNN>` token (6 bytes; the two between "<0x" and ">" read as Rust's `u8::from_str_radix(_, 16)`,
    /// which also takes "+N").
    static func fallbackByte(_ token: String) -> UInt8? {
        let b = Array(token.utf8)
        guard b.count == 6, b[0] == UInt8(ascii: "<"), b[1] == UInt8(ascii: "0"), b[2] == UInt8(ascii: "x"), b[5] == UInt8(ascii: ">") else { return nil }
        func hex(_ c: UInt8) -> UInt8? {
            switch c {
            case 0x30...0x39: c - 0x30
            case 0x41...0x46: c - 0x41 + 10
            case 0x61...0x66: c - 0x61 + 10
            default: nil
            }
        }
        if b[3] == UInt8(ascii: "+") { return hex(b[4]) }
        guard let high = hex(b[3]), let low = hex(b[4]) else { return nil }
        return high << 4 | low
    }

    /// GPT-2's byte symbols back to bytes, by scalar value.
    static let symbolBytes: [UInt32: UInt8] = Dictionary(uniqueKeysWithValues: GPT2Tokenizer.byteSymbols.enumerated().map {
        ($1.unicodeScalars.first!.value, UInt8($0))
    })
}
