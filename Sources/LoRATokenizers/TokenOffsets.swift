// Token offsets: which bytes of the encoded text each token stands for, as HF's `Encoding.offsets` give them (what
// transformers' `return_assistant_tokens_mask` and `char_to_token` are built on). HF tracks an alignment through
// every normalizer and pre-tokenizer; here the tokens' own text is aligned back onto the input instead: each token's
// units (bytes for byte-level BPE and byte fallback, else scalars, "▁" standing for a space) are matched in order
// against the input bytes. What HF inserts (a normalizer's Prepend, a prefix space from ByteLevel or Metaspace) is
// aligned, as in HF, to the character it was put before; a character NFC/NFKC rewrote stands for all of its
// normalized units. Components that delete or reorder text (Strip, StripAccents, NFD/NFKD, Whitespace splitting,
// Split with `Removed`, BPE's unknown token) are refused by name, and any place the alignment fails is an error
// rather than a guess.
import LoRAFormats

/// A token id and the UTF-8 bytes of the encoded text it came from.
public struct TokenOffset: Sendable, Equatable {
    public let id: Int
    /// Byte offsets into the text's UTF-8 (HF's offsets before the Python binding turns them into characters). A token
    /// that holds part of a character (byte-level BPE, byte fallback) covers the whole character, as in HF.
    public let utf8: Range<Int>

    public init(id: Int, utf8: Range<Int>) { (self.id, self.utf8) = (id, utf8) }
}

/// A tokenizer that can say where each token came from.
public protocol OffsetTokenizer: Tokenizer {
    /// The ids of `text` with nothing added (HF's `add_special_tokens=False`), each with its offsets. The ids are
    /// exactly `encode(text, addSpecialTokens: false)`.
    func encodeWithOffsets(_ text: String) throws -> [TokenOffset]
}

extension TokenOffset {
    /// Character (Unicode scalar) offsets of each token, as transformers' `encodings[i].offsets` give them (HF's
    /// byte-to-char conversion: each end maps to the character holding that byte, the text's end to the count).
    public static func characterOffsets(_ offsets: [TokenOffset], in text: String) -> [Range<Int>] {
        var charOfByte: [Int] = []
        charOfByte.reserveCapacity(text.utf8.count + 1)
        var index = 0
        for scalar in text.unicodeScalars {
            for _ in 0..<scalar.utf8Length { charOfByte.append(index) }
            index += 1
        }
        charOfByte.append(index)
        return offsets.map { t in charOfByte[t.utf8.lowerBound]..<charOfByte[t.utf8.upperBound] }
    }
}

/// What the offsets path cannot follow.
public struct OffsetError: Error, CustomStringConvertible, Equatable {
    public let reason: String
    public var description: String { "token offsets: \(reason)" }
}

// MARK: - tokenizer.json

extension HFTokenizer: OffsetTokenizer {
    /// One unit of a token's text, as it is matched against the input.
    private enum Unit {
        case byte(UInt8)
        case scalar(Unicode.Scalar)
    }

    public func encodeWithOffsets(_ text: String) throws -> [TokenOffset] {
        try checkOffsetSupport()
        let bytes = Array(text.utf8)
        var out: [TokenOffset] = []
        for segment in rawMatcher?.segments(bytes) ?? [.text(0..<bytes.count)] {
            switch segment {
            case .token(let id, let range): out.append(TokenOffset(id: id, utf8: range))
            case .text(let range):
                guard !range.isEmpty else { continue }
                var atOrigin = range.lowerBound == 0
                var stretch = String(decoding: bytes[range], as: UTF8.self)
                if let normalizer { stretch = normalizer.apply(stretch, atOrigin: &atOrigin) }
                let normalizedBytes = Array(stretch.utf8)
                var tokens: [(id: Int, units: [Unit])] = []
                for inner in normalizedMatcher?.segments(normalizedBytes) ?? [.text(0..<normalizedBytes.count)] {
                    switch inner {
                    case .token(let id, _): tokens.append((id, units(ofAdded: id)))
                    case .text(let innerRange):
                        guard !innerRange.isEmpty else { continue }
                        let piece = Piece(text: String(decoding: normalizedBytes[innerRange], as: UTF8.self),
                                          atOrigin: atOrigin && innerRange.lowerBound == 0)
                        for word in preTokenizer?.apply([piece]) ?? [piece] {
                            let ids = try model.tokenize(word.text).map(Int.init)
                            for (i, id) in ids.enumerated() {
                                tokens.append((id, try units(ofModel: id, first: i == 0, last: i == ids.count - 1)))
                            }
                        }
                    }
                }
                out += try align(tokens, bytes: bytes, range: range, prepended: normalizer?.prependedScalars ?? 0)
            }
        }
        if let addPrefixSpace = postProcessor?.offsetTrimming { out = trimmed(out, addPrefixSpace: addPrefixSpace) }
        return out
    }

    /// Refuses the components whose effect on offsets this file does not follow.
    private func checkOffsetSupport() throws {
        if let name = normalizer?.offsetBlocker { throw OffsetError(reason: "the \(name) normalizer is not supported") }
        if let name = preTokenizer?.offsetBlocker { throw OffsetError(reason: "the \(name) pre-tokenizer is not supported") }
    }

    private var isByteLevel: Bool { normalizer?.hasByteLevel == true || preTokenizer?.hasByteLevel == true }

    /// The scalars standing for a space: Metaspace's replacement, or what a Replace normalizer turns " " into.
    private var spaceStandIns: Set<Unicode.Scalar> { (normalizer?.spaceStandIns ?? []).union(preTokenizer?.spaceStandIns ?? []) }

    private func units(ofAdded id: Int) -> [Unit] {
        (addedByIDForOffsets[id] ?? "").unicodeScalars.map(Unit.scalar)
    }

    private func units(ofModel id: Int, first: Bool, last: Bool) throws -> [Unit] {
        if let unknown = model.unknownToken, model.vocabulary[ExactString(unknown)] == id {
            throw OffsetError(reason: "the text has characters the vocabulary lacks (\(JSONValue.quote(unknown))), whose offsets are not followed")
        }
        if let fallback = model.byteFallbackIDs, let byte = fallback.firstIndex(of: Int32(id)) { return [.byte(UInt8(byte))] }
        guard var token = model.tokens[id] else { throw TokenizerError.unknownID(id) }
        if let prefix = model.prefix, !first, token.hasPrefix(prefix) { token.removeFirst(prefix.count) }
        if let suffix = model.suffix, last, token.hasSuffix(suffix) { token.removeLast(suffix.count) }
        if isByteLevel {
            return try token.map { c in
                guard let byte = GPT2Tokenizer.symbolBytes[c] else { throw OffsetError(reason: "token \(JSONValue.quote(token)) is not byte-level") }
                return .byte(byte)
            }
        }
        return token.unicodeScalars.map(Unit.scalar)
    }

    /// Matches the stretch's tokens, in order, against `bytes[range]`. The first `prepended` units are the
    /// normalizer's Prepend; a space-like unit that matches nothing was inserted before the next character.
    private func align(_ tokens: [(id: Int, units: [Unit])], bytes: [UInt8], range: Range<Int>, prepended: Int) throws -> [TokenOffset] {
        let standIns = spaceStandIns
        let lowercase = normalizer?.lowercases == true
        var p = range.lowerBound, insertedLeft = prepended
        func characterRange(at i: Int) -> Range<Int> {
            let at = min(i, range.upperBound - 1)
            var start = at
            while start > range.lowerBound && bytes[start] & 0xC0 == 0x80 { start -= 1 }
            return start..<(start + (AddedTokenMatcher.scalar(at: start, in: bytes)?.utf8Length ?? 1))
        }
        func matches(_ expected: [UInt8], at i: Int) -> Bool {
            guard i + expected.count <= range.upperBound else { return false }
            for (k, e) in expected.enumerated() {
                var b = bytes[i + k]
                if lowercase && b >= 0x41 && b <= 0x5A { b |= 0x20 }
                if b != e { return false }
            }
            return true
        }
        // A character the normalizer rewrote (NFC composing "e" + U+0301 into "é", NFKC): its normalized bytes, matched
        // unit by unit, all standing for the character's first scalar, as HF aligns them (the scalars composed into
        // it are deleted, and deleted text has no offsets).
        var pending: (bytes: ArraySlice<UInt8>, range: Range<Int>)? = nil
        func rewritten(at i: Int) -> (bytes: ArraySlice<UInt8>, range: Range<Int>, end: Int)? {
            guard let normalizer, i < range.upperBound else { return nil }
            let text = String(decoding: bytes[i..<range.upperBound], as: UTF8.self)
            guard let first = text.first, let scalar = first.unicodeScalars.first else { return nil }
            let length = String(first).utf8.count
            return (ArraySlice(Array(normalizer.apply(String(first)).utf8)), i..<i + scalar.utf8Length, i + length)
        }
        var out: [TokenOffset] = []
        for token in tokens {
            var lo = Int.max, hi = Int.min
            func cover(_ r: Range<Int>) { (lo, hi) = (min(lo, r.lowerBound), max(hi, r.upperBound)) }
            for unit in token.units {
                if insertedLeft > 0 {
                    insertedLeft -= 1
                    cover(characterRange(at: range.lowerBound))
                    continue
                }
                let expected: [UInt8], spaceLike: Bool
                switch unit {
                case .byte(let b): (expected, spaceLike) = ([b], b == 0x20)
                case .scalar(let s): (expected, spaceLike) = (Array(String(s).utf8), s == " " || standIns.contains(s))
                }
                if let current = pending {
                    guard current.bytes.starts(with: expected) else {
                        throw OffsetError(reason: "token \(token.id) does not match the normalized text at byte \(current.range.lowerBound)")
                    }
                    cover(current.range)
                    let rest = current.bytes.dropFirst(expected.count)
                    pending = rest.isEmpty ? nil : (rest, current.range)
                } else if matches(expected, at: p) {
                    // A byte of a longer character (byte-level BPE, byte fallback) stands for the whole character.
                    cover(characterRange(at: p))
                    cover(characterRange(at: p + expected.count - 1))
                    p += expected.count
                } else if spaceLike && p < range.upperBound && bytes[p] == 0x20 && expected != [0x20] {
                    cover(p..<p + 1)
                    p += 1
                } else if spaceLike {
                    cover(characterRange(at: p))
                } else if let change = rewritten(at: p), change.bytes.starts(with: expected) {
                    cover(change.range)
                    p = change.end
                    let rest = change.bytes.dropFirst(expected.count)
                    pending = rest.isEmpty ? nil : (rest, change.range)
                } else {
                    let found = p < range.upperBound ? JSONValue.quote(String(decoding: bytes[p..<min(range.upperBound, p + 12)], as: UTF8.self)) : "the end"
                    throw OffsetError(reason: "token \(token.id) does not match the text at byte \(p) (\(found)); the normalizer changed it")
                }
            }
            out.append(TokenOffset(id: token.id, utf8: lo <= hi ? lo..<hi : p..<p))
        }
        return out
    }

    /// HF's ByteLevel `process_offsets`: offsets move past a token's leading and trailing spaces ("Ġ"), except the
    /// one prefix space `add_prefix_space` put before the first token.
    private func trimmed(_ offsets: [TokenOffset], addPrefixSpace: Bool) -> [TokenOffset] {
        let space = GPT2Tokenizer.byteSymbols[0x20]
        return offsets.enumerated().map { i, t in
            guard let token = token(of: t.id) else { return t }
            var leading = token.prefix(while: { $0 == space }).count
            let trailing = token.reversed().prefix(while: { $0 == space }).count
            guard leading > 0 || trailing > 0 else { return t }
            var (start, end) = (t.utf8.lowerBound, t.utf8.upperBound)
            if leading > 0 {
                if (i == 0 || start == 0) && addPrefixSpace && leading == 1 { leading = 0 }
                start = min(start + leading, end)
            }
            if trailing > 0 && end >= trailing { end = max(end - trailing, start) }
            return TokenOffset(id: t.id, utf8: start..<end)
        }
    }
}

extension Normalizer {
    /// The first component whose offsets are not followed, by its tokenizer.json name.
    var offsetBlocker: String? {
        switch self {
        case .nfd: "NFD"
        case .nfkd: "NFKD"
        case .stripAccents: "StripAccents"
        case .strip: "Strip"
        case .nmt: "Nmt"
        case .replace(_, let content) where content.isEmpty: "Replace (deleting text)"
        case .sequence(let steps): steps.lazy.compactMap(\.offsetBlocker).first
        default: nil
        }
    }

    /// Scalars a Prepend puts before non-empty text.
    var prependedScalars: Int {
        switch self {
        case .prepend(let prefix): prefix.unicodeScalars.count
        case .sequence(let steps): steps.reduce(0) { $0 + $1.prependedScalars }
        default: 0
        }
    }

    var hasByteLevel: Bool {
        switch self {
        case .byteLevel: true
        case .sequence(let steps): steps.contains(where: \.hasByteLevel)
        default: false
        }
    }

    var lowercases: Bool {
        switch self {
        case .lowercase: true
        case .sequence(let steps): steps.contains(where: \.lowercases)
        default: false
        }
    }

    var spaceStandIns: Set<Unicode.Scalar> {
        switch self {
        case .replace(.literal(let needle), let content) where needle == [" "] && content.unicodeScalars.count == 1:
            [content.unicodeScalars.first!]
        case .sequence(let steps): steps.reduce(into: []) { $0.formUnion($1.spaceStandIns) }
        default: []
        }
    }
}

extension PreTokenizer {
    var offsetBlocker: String? {
        switch self {
        case .whitespace: "Whitespace"
        case .whitespaceSplit: "WhitespaceSplit"
        case .split(_, let behavior, _) where behavior == .removed: "Split (Removed)"
        case .sequence(let steps): steps.lazy.compactMap(\.offsetBlocker).first
        default: nil
        }
    }

    var hasByteLevel: Bool {
        switch self {
        case .byteLevel: true
        case .sequence(let steps): steps.contains(where: \.hasByteLevel)
        default: false
        }
    }

    var spaceStandIns: Set<Unicode.Scalar> {
        switch self {
        case .metaspace(let replacement, _, _): [replacement]
        case .sequence(let steps): steps.reduce(into: []) { $0.formUnion($1.spaceStandIns) }
        default: []
        }
    }
}

// MARK: - vocab.json + merges.txt

extension GPT2Tokenizer: OffsetTokenizer {
    /// GPT-2 has no normalizer and no prefix space: every token is a run of the text's bytes, in order; a token
    /// holding part of a character covers the whole character, as HF's byte-level alignment does.
    public func encodeWithOffsets(_ text: String) throws -> [TokenOffset] {
        let bytes = Array(text.utf8)
        var offset = 0
        return try encode(text).map { id in
            guard let token = token(of: id) else { throw TokenizerError.unknownID(id) }
            let length = id == endOfText ? token.utf8.count : token.count
            defer { offset += length }
            var (start, end) = (offset, offset + length)
            while start > 0 && start < bytes.count && bytes[start] & 0xC0 == 0x80 { start -= 1 }
            while end < bytes.count && bytes[end] & 0xC0 == 0x80 { end += 1 }
            return TokenOffset(id: id, utf8: start..<end)
        }
    }
}
