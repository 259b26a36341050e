// tokenizer.json's `model` of type BPE, as HF's `models::bpe` runs it: each word starts as one symbol per
// Unicode scalar (with `continuing_subword_prefix` / `end_of_word_suffix` attached), a scalar missing from the
// vocabulary becomes its `<0xNN>` byte tokens (`byte_fallback`) or `unk_token` (consecutive ones fused with
// `fuse_unk`); then the lowest-ranked adjacent pair is merged, leftmost first, until no pair has a merge.
// Merges run on a linked list with a min-heap of (rank, position), O(n log n) per word, because
// SentencePiece-style files have no pre-tokenizer and a whole paragraph is one word. Short words are cached.
// `ignore_merges` (Llama 3): a word that is itself a token is that token. `dropout` is refused (it is random).
import Foundation
import LoRAFormats

final class BPEModel: @unchecked Sendable {
    /// token → id, exact strings.
    let vocabulary: [ExactString: Int]
    /// id → token.
    let tokens: [Int: String]
    /// (left id << 32 | right id) → (rank << 32 | merged id).
    private let merges: [UInt64: UInt64]
    /// Single-scalar tokens' ids (when no prefix/suffix decorates symbols): the per-scalar lookup without hashing a String.
    private let scalarIDs: [UInt32: Int32]
    let byteFallbackIDs: [Int32]?
    let unknownToken: String?
    private let fuseUnknown: Bool
    private let ignoreMerges: Bool
    let prefix: String?
    let suffix: String?
    private var cache: [ExactString: [Int32]] = [:]
    private let lock = NSLock()

    init(_ field: JSONField) throws {
        guard try field.type() == "BPE" else {
            throw field.unsupported("model type \(JSONValue.quote(try field.type())) is not supported (only BPE)")
        }
        if let dropout = field.optional("dropout"), (dropout.node.double ?? 1) != 0 {
            throw dropout.unsupported("BPE dropout \(dropout.node.kind) is not supported (it makes encoding random)")
        }
        unknownToken = try field.optional("unk_token")?.string()
        fuseUnknown = try field.optionalBool("fuse_unk", default: false)
        ignoreMerges = try field.optionalBool("ignore_merges", default: false)
        let byteFallback = try field.optionalBool("byte_fallback", default: false)
        prefix = try field.optional("continuing_subword_prefix")?.string()
        suffix = try field.optional("end_of_word_suffix")?.string()

        let vocabField = try field.required("vocab")
        guard let pairs = vocabField.node.pairs else { throw vocabField.invalid("is \(vocabField.node.kind), not an object of token → id") }
        var vocabulary: [ExactString: Int] = [:], tokens: [Int: String] = [:]
        vocabulary.reserveCapacity(pairs.count)
        tokens.reserveCapacity(pairs.count)
        for member in pairs {
            let (token, value) = (member.key, member.value)
            guard let id = value.int, id >= 0, id <= Int(Int32.max) else {
                throw vocabField.invalid("token \(JSONValue.quote(token)) has id \(value.kind), not an integer in 0...\(Int32.max)")
            }
            guard vocabulary.updateValue(id, forKey: ExactString(token)) == nil else {
                throw vocabField.invalid("token \(JSONValue.quote(token)) appears twice")
            }
            if let other = tokens.updateValue(token, forKey: id) {
                throw vocabField.invalid("id \(id) is given to both \(JSONValue.quote(other)) and \(JSONValue.quote(token))")
            }
        }
        (self.vocabulary, self.tokens) = (vocabulary, tokens)

        var scalarIDs: [UInt32: Int32] = [:]
        if prefix == nil && suffix == nil {
            for (token, id) in vocabulary where token.string.unicodeScalars.count == 1 {
                scalarIDs[token.string.unicodeScalars.first!.value] = Int32(id)
            }
        }
        self.scalarIDs = scalarIDs
        if byteFallback {
            byteFallbackIDs = (0..<256).map { Int32(vocabulary[ExactString(String(format: "<0x%02X>", $0))] ?? -1) }
        } else {
            byteFallbackIDs = nil
        }

        // Merges: "a b" strings (older files) or [a, b] pairs; a, b and their concatenation (b without the
        // continuing-subword prefix) must be tokens. A repeated pair keeps its last rank, as HF's map does.
        let mergesField = try field.required("merges")
        var merges: [UInt64: UInt64] = [:]
        let prefixLength = prefix?.utf8.count ?? 0
        for (rank, item) in try mergesField.array().enumerated() {
            let left: String, right: String
            if let line = item.node.string {
                let parts = line.split(separator: " ", omittingEmptySubsequences: false)
                guard parts.count == 2 else { throw item.invalid("\(JSONValue.quote(line)) is not two tokens separated by one space") }
                (left, right) = (String(parts[0]), String(parts[1]))
            } else if let pair = item.node.array, pair.count == 2, let a = pair[0].string, let b = pair[1].string {
                (left, right) = (a, b)
            } else {
                throw item.invalid("is \(item.node.kind), not \"a b\" or [\"a\", \"b\"]")
            }
            guard let a = vocabulary[ExactString(left)] else { throw item.invalid("merges \(JSONValue.quote(left)), which is not in the vocabulary") }
            guard let b = vocabulary[ExactString(right)] else { throw item.invalid("merges \(JSONValue.quote(right)), which is not in the vocabulary") }
            let rightBody = right.utf8.count >= prefixLength ? String(decoding: Array(right.utf8.dropFirst(prefixLength)), as: UTF8.self) : right
            let merged = left + rightBody
            guard let id = vocabulary[ExactString(merged)] else { throw item.invalid("makes \(JSONValue.quote(merged)), which is not in the vocabulary") }
            merges[UInt64(a) << 32 | UInt64(b)] = UInt64(rank) << 32 | UInt64(id)
        }
        self.merges = merges
        if let unknownToken, vocabulary[ExactString(unknownToken)] == nil {
            throw field.invalid("unk_token \(JSONValue.quote(unknownToken)) is not in the vocabulary")
        }
    }

    /// The ids of one word.
    func tokenize(_ word: String) throws -> [Int32] {
        if word.isEmpty { return [] }
        let key = ExactString(word)
        if ignoreMerges, let id = vocabulary[key] { return [Int32(id)] }
        let cacheable = word.utf8.count < 256
        if cacheable, let hit = lock.withLock({ cache[key] }) { return hit }
        var symbols = try initialSymbols(word)
        merge(&symbols)
        if cacheable { lock.withLock { if cache.count < 1 << 17 { cache[key] = symbols } } }
        return symbols
    }

    /// One symbol per scalar (HF's `merge_word` before `merge_all`).
    private func initialSymbols(_ word: String) throws -> [Int32] {
        var symbols: [Int32] = []
        symbols.reserveCapacity(word.utf8.count)
        var unknown: Int32? = nil
        let scalars = word.unicodeScalars
        var index = scalars.startIndex
        while index != scalars.endIndex {
            let scalar = scalars[index]
            let isFirst = index == scalars.startIndex
            index = scalars.index(after: index)
            var id: Int32?
            var text: String? = nil
            if prefix == nil && suffix == nil {
                id = scalarIDs[scalar.value]
            } else {
                var s = String(scalar)
                if let prefix, !isFirst { s = prefix + s }
                if let suffix, index == scalars.endIndex { s += suffix }
                text = s
                id = vocabulary[ExactString(s)].map(Int32.init)
            }
            if let id {
                if let pending = unknown { symbols.append(pending); unknown = nil }
                symbols.append(id)
                continue
            }
            let bytes = Array((text ?? String(scalar)).utf8)
            if let table = byteFallbackIDs, bytes.allSatisfy({ table[Int($0)] >= 0 }) {
                // HF appends the byte tokens without flushing a pending unk first; kept as it does.
                symbols += bytes.map { table[Int($0)] }
                continue
            }
            guard let unknownToken else { continue }  // HF drops the character silently
            let unknownID = Int32(vocabulary[ExactString(unknownToken)]!)
            if let pending = unknown, !fuseUnknown { symbols.append(pending) }
            unknown = unknownID
        }
        if let pending = unknown { symbols.append(pending) }
        return symbols
    }

    /// HF's `Word::merge_all` without dropout: repeatedly the lowest (rank, position) pair.
    private func merge(_ symbols: inout [Int32]) {
        let n = symbols.count
        guard n > 1 else { return }
        var next = Array(1...n), previous = Array(-1..<(n - 1)), alive = [Bool](repeating: true, count: n)
        next[n - 1] = -1
        var heap = MinHeap()
        for i in 0..<(n - 1) {
            if let m = merges[UInt64(UInt32(bitPattern: symbols[i])) << 32 | UInt64(UInt32(bitPattern: symbols[i + 1]))] {
                heap.push(m & 0xFFFF_FFFF_0000_0000 | UInt64(i))
            }
        }
        while let top = heap.pop() {
            let rank = top >> 32, position = Int(top & 0xFFFF_FFFF)
            guard alive[position], next[position] >= 0 else { continue }
            let right = next[position]
            guard let m = merges[UInt64(UInt32(bitPattern: symbols[position])) << 32 | UInt64(UInt32(bitPattern: symbols[right]))],
                  m >> 32 == rank else { continue }  // a stale entry: this pair changed since it was queued
            symbols[position] = Int32(truncatingIfNeeded: m & 0xFFFF_FFFF)
            alive[right] = false
            next[position] = next[right]
            if next[right] >= 0 { previous[next[right]] = position }
            if previous[position] >= 0 {
                let p = previous[position]
                if let pm = merges[UInt64(UInt32(bitPattern: symbols[p])) << 32 | UInt64(UInt32(bitPattern: symbols[position]))] {
                    heap.push(pm & 0xFFFF_FFFF_0000_0000 | UInt64(p))
                }
            }
            if next[position] >= 0 {
                if let nm = merges[UInt64(UInt32(bitPattern: symbols[position])) << 32 | UInt64(UInt32(bitPattern: symbols[next[position]]))] {
                    heap.push(nm & 0xFFFF_FFFF_0000_0000 | UInt64(position))
                }
            }
        }
        var out: [Int32] = []
        out.reserveCapacity(n)
        for i in 0..<n where alive[i] { out.append(symbols[i]) }
        symbols = out
    }
}

/// A binary min-heap of UInt64 keys (rank in the high half, position in the low half: ties go leftmost).
struct MinHeap {
    private var items: [UInt64] = []

    mutating func push(_ value: UInt64) {
        items.append(value)
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard items[parent] > items[i] else { break }
            items.swapAt(parent, i)
            i = parent
        }
    }

    mutating func pop() -> UInt64? {
        guard let first = items.first else { return nil }
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var smallest = i
                if l < items.count && items[l] < items[smallest] { smallest = l }
                if r < items.count && items[r] < items[smallest] { smallest = r }
                if smallest == i { break }
                items.swapAt(i, smallest)
                i = smallest
            }
        }
        return first
    }
}
