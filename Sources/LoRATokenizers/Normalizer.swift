// tokenizer.json's `normalizer`: applied to each stretch of text between added tokens, before pre-tokenization.
// NFC/NFD/NFKC/NFKD (Foundation's Unicode tables), Lowercase (per scalar, as Rust's `char::to_lowercase`),
// Prepend, Replace, Strip, StripAccents, Nmt, ByteLevel and Sequence. BertNormalizer and Precompiled (the
// SentencePiece charsmap) are refused by name.
import Foundation
import LoRAFormats

indirect enum Normalizer {
    case nfc, nfd, nfkc, nfkd, lowercase, stripAccents, nmt, byteLevel
    case prepend(String)
    case replace(TextPattern, String)
    case strip(left: Bool, right: Bool)
    case sequence([Normalizer])

    init(_ field: JSONField) throws {
        switch try field.type() {
        case "NFC": self = .nfc
        case "NFD": self = .nfd
        case "NFKC": self = .nfkc
        case "NFKD": self = .nfkd
        case "Lowercase": self = .lowercase
        case "StripAccents": self = .stripAccents
        case "Nmt": self = .nmt
        case "ByteLevel": self = .byteLevel
        case "Prepend": self = .prepend(try field.required("prepend").string())
        case "Replace": self = .replace(try TextPattern(field.required("pattern")), try field.required("content").string())
        case "Strip":
            self = .strip(left: try field.optionalBool("strip_left", default: true), right: try field.optionalBool("strip_right", default: true))
        case "Sequence": self = .sequence(try field.required("normalizers").array().map(Normalizer.init))
        case let other: throw field.unsupported("normalizer type \(JSONValue.quote(other)) is not supported")
        }
    }

    /// `text` normalized. `atOrigin` turns false when leading text is removed (HF's offsets would then no longer
    /// start at 0, which Metaspace's `prepend_scheme: first` looks at).
    func apply(_ text: String, atOrigin: inout Bool) -> String {
        switch self {
        case .nfc, .nfd, .nfkc, .nfkd:
            if text.utf8.allSatisfy({ $0 < 0x80 }) { return text }  // ASCII is in every normal form
            switch self {
            case .nfc: return text.precomposedStringWithCanonicalMapping
            case .nfd: return text.decomposedStringWithCanonicalMapping
            case .nfkc: return text.precomposedStringWithCompatibilityMapping
            default: return text.decomposedStringWithCompatibilityMapping
            }
        case .lowercase:
            var out: [UInt8] = []
            out.reserveCapacity(text.utf8.count)
            for scalar in text.unicodeScalars {
                if scalar.isASCII { out.append(UInt8(ascii: scalar) | (scalar.properties.isUppercase ? 0x20 : 0)) }
                else { out += scalar.properties.lowercaseMapping.utf8 }
            }
            return String(decoding: out, as: UTF8.self)
        case .stripAccents:
            return String(scalars: text.unicodeScalars.filter {
                ![.nonspacingMark, .spacingMark, .enclosingMark].contains($0.properties.generalCategory)
            })
        case .nmt:
            var out = String.UnicodeScalarView()
            for scalar in text.unicodeScalars {
                switch scalar.value {
                case 0x01...0x08, 0x0B, 0x0E...0x1F, 0x7F, 0x8F, 0x9F: continue
                case 0x09, 0x0A, 0x0C, 0x0D, 0x1680, 0x200B...0x200F, 0x2028, 0x2029, 0x2581, 0xFEFF, 0xFFFD: out.append(" ")
                default: out.append(scalar)
                }
            }
            return String(out)
        case .byteLevel: return byteLevelSymbols(text)
        case .prepend(let prefix): return text.isEmpty ? text : prefix + text
        case .replace(let pattern, let content): return pattern.replaceMatches(in: text, with: content)
        case .strip(let left, let right):
            var scalars = Substring(text).unicodeScalars
            if left {
                let before = scalars.count
                scalars = scalars.drop(while: \.isWhiteSpace)
                if scalars.count != before { atOrigin = false }
            }
            if right { while let last = scalars.last, last.isWhiteSpace { scalars.removeLast() } }
            return String(scalars: scalars)
        case .sequence(let normalizers):
            return normalizers.reduce(text) { $1.apply($0, atOrigin: &atOrigin) }
        }
    }

    /// `text` normalized, where no piece position matters (added-token patterns).
    func apply(_ text: String) -> String {
        var atOrigin = true
        return apply(text, atOrigin: &atOrigin)
    }
}

/// GPT-2's bytes_to_unicode of the text's UTF-8: each byte as its printable symbol.
func byteLevelSymbols(_ text: String) -> String {
    var out: [UInt8] = []
    out.reserveCapacity(text.utf8.count * 2)
    for byte in text.utf8 { out += byteSymbolUTF8[Int(byte)] }
    return String(decoding: out, as: UTF8.self)
}

private let byteSymbolUTF8: [[UInt8]] = GPT2Tokenizer.byteSymbols.map { Array(String($0).utf8) }
