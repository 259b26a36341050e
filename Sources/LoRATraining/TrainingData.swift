// What a training run feeds the model: a fixed batch (every step sees the whole array), a token stream cut
// into windows of seq + 1 tokens (seq predictions each), or labelled examples of any length (JSONL data: ids and
// unshifted labels, -100 where there is no loss), shuffled per epoch by the seed, taken `batch` at a time.
// Examples of different lengths in one batch are right-padded (pad id, labels -100): padding sits after every real
// token, so causal attention keeps it out of their logits, and the loss ignores it. Packed examples (Packing.swift)
// are windows of several examples each, with the examples' lengths, which batches carry as segments.
import LoRAModels
import LoRARuntime

/// One batch: rows of equal length, their labels (nil: the tokens themselves), how many tokens are not padding, and
/// for packed rows where their examples begin and end.
public struct LabeledBatch: Sendable, Equatable {
    public var tokens: [[Int]]
    public var labels: [[Int]]?
    public var realTokens: Int
    /// Packed rows' examples (nil: one example a row).
    public var segments: PackedSegments? = nil

    public init(tokens: [[Int]], labels: [[Int]]?, realTokens: Int, segments: PackedSegments? = nil) {
        (self.tokens, self.labels, self.realTokens, self.segments) = (tokens, labels, realTokens, segments)
    }

    /// Right-pads `tokens` with `padID` and `labels` with -100 to the longest row.
    public static func padded(_ tokens: [[Int]], labels: [[Int]], padID: Int) -> LabeledBatch {
        precondition(tokens.count == labels.count && zip(tokens, labels).allSatisfy { $0.count == $1.count },
                     "labels must match the tokens row for row")
        let length = tokens.map(\.count).max() ?? 0
        return LabeledBatch(tokens: tokens.map { $0 + [Int](repeating: padID, count: length - $0.count) },
                            labels: labels.map { $0 + [Int](repeating: -100, count: length - $0.count) },
                            realTokens: tokens.reduce(0) { $0 + $1.count })
    }
}

/// Batches for training, with a position a checkpoint can save and restore.
public struct TrainingData: Sendable {
    /// The windows (all of one length), or the examples' ids (any lengths) when `labels` is set.
    public let windows: [[Int]]
    /// Each example's labels (unshifted, -100: no loss); nil when the labels are the tokens themselves.
    public let labels: [[Int]]?
    /// What shorter examples are padded with (their labels there are -100).
    public let padID: Int
    /// Packed windows: each window's examples' lengths (nil: unpacked).
    public let segments: [[Int]]?
    /// The window length examples were packed into (nil: unpacked).
    public let packedLength: Int?
    /// Windows per batch.
    public let batch: Int
    /// A fixed batch repeats every step; otherwise windows are shuffled per epoch.
    public let fixed: Bool
    public let seed: UInt64

    /// Where the next batch starts: the epoch and the index of its first window in that epoch's order.
    public var epoch = 0, index = 0
    /// The order of the epoch last drawn from, so it is shuffled once per epoch, not once per batch.
    private var cachedOrder: (epoch: Int, order: [Int])?

    /// The whole array is the batch at every step.
    public init(fixedBatch: [[Int]]) throws {
        guard let length = fixedBatch.first?.count, length >= 2, fixedBatch.allSatisfy({ $0.count == length }) else {
            throw TrainingError.invalidSetup("training tokens must be equal-length sequences of at least 2 ids")
        }
        (windows, batch, fixed, seed) = (fixedBatch, fixedBatch.count, true, 0)
        (labels, padID, segments, packedLength) = (nil, 0, nil, nil)
    }

    /// Labelled examples (ids and unshifted labels of the same length, each at least 2 tokens), shuffled per
    /// epoch by `seed`; a batch's shorter rows are right-padded with `padID`.
    public init(examples: [[Int]], labels: [[Int]], batch: Int, seed: UInt64, padID: Int) throws {
        guard batch >= 1 else { throw TrainingError.invalidSetup("the batch size (\(batch)) must be at least 1") }
        guard !examples.isEmpty else { throw TrainingError.invalidSetup("there are no training examples") }
        guard examples.count == labels.count, zip(examples, labels).allSatisfy({ $0.count == $1.count && $0.count >= 2 }) else {
            throw TrainingError.invalidSetup("every example needs labels of its own length and at least 2 tokens")
        }
        (windows, self.labels, self.batch, fixed, self.seed, self.padID) = (examples, labels, batch, false, seed, padID)
        (segments, packedLength) = (nil, nil)
    }

    /// Labelled examples packed into windows of at most `length` tokens (first-fit decreasing, `Packing.pack`);
    /// the windows are shuffled per epoch by `seed`, and a batch's shorter rows right-padded with `padID`.
    public init(packing examples: [[Int]], labels: [[Int]], length: Int, batch: Int, seed: UInt64, padID: Int) throws {
        guard batch >= 1 else { throw TrainingError.invalidSetup("the batch size (\(batch)) must be at least 1") }
        guard !examples.isEmpty else { throw TrainingError.invalidSetup("there are no training examples") }
        let packed = try Packing.pack(examples, labels: labels, length: length)
        (windows, self.labels, segments) = (packed.map(\.tokens), packed.map(\.labels), packed.map(\.lengths))
        (self.batch, fixed, self.seed, self.padID, packedLength) = (batch, false, seed, padID, length)
    }

    /// A token stream cut into windows of `seq + 1` tokens (the tail that does not fill one is dropped).
    public init(stream: [Int], seq: Int, batch: Int, seed: UInt64) throws {
        guard seq >= 1, batch >= 1 else { throw TrainingError.invalidSetup("the sequence length (\(seq)) and batch size (\(batch)) must be at least 1") }
        let windows = stride(from: 0, to: stream.count - seq, by: seq + 1).map { Array(stream[$0..<$0 + seq + 1]) }
        guard !windows.isEmpty else {
            throw TrainingError.invalidSetup("the data has \(stream.count) tokens, fewer than one window of \(seq) + 1")
        }
        (self.windows, self.batch, fixed, self.seed) = (windows, batch, false, seed)
        (labels, padID, segments, packedLength) = (nil, 0, nil, nil)
    }

    /// Windows of one length (a stream's windows with some held out), shuffled per epoch by `seed`.
    public init(windows: [[Int]], batch: Int, seed: UInt64) throws {
        guard let length = windows.first?.count, length >= 2, windows.allSatisfy({ $0.count == length }), batch >= 1 else {
            throw TrainingError.invalidSetup("training windows must be equal-length sequences of at least 2 ids, and the batch at least 1")
        }
        (self.windows, self.batch, fixed, self.seed) = (windows, batch, false, seed)
        (labels, padID, segments, packedLength) = (nil, 0, nil, nil)
    }

    /// The windows' count, length and an FNV-1a hash of their ids: what a checkpoint records to tell the same data
    /// from other data.
    public var fingerprint: String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for window in windows {
            for id in window {
                for byte in 0..<4 { hash = (hash ^ UInt64(UInt32(truncatingIfNeeded: id) >> (8 * byte) & 0xff)) &* 0x100_0000_01b3 }
            }
        }
        let fnv = "(FNV-1a \(String(hash, radix: 16)))"
        if let packedLength, let segments {
            return "\(windows.count) windows of up to \(packedLength) tokens packing \(segments.joined().count) examples \(fnv)"
        }
        let kind = fixed ? "a fixed batch of \(windows.count) sequences" : "\(windows.count) windows"
        return "\(kind) of \(windows.first?.count ?? 0) tokens \(fnv)"
    }

    /// Batches per epoch.
    public var batchesPerEpoch: Int { fixed ? 1 : (windows.count + batch - 1) / batch }

    /// The window order of `epoch`: a Fisher-Yates shuffle seeded by (seed, epoch), so any epoch can be rebuilt.
    func order(epoch: Int) -> [Int] {
        var generator = SeededGenerator(seed: seed &+ UInt64(epoch) &* 0x9E37_79B9_7F4A_7C15)
        var order = Array(windows.indices)
        for i in stride(from: order.count - 1, to: 0, by: -1) { order.swapAt(i, Int(generator.next() % UInt64(i + 1))) }
        return order
    }

    /// The next batch's window indices; advances the position (a new epoch starts when this one runs out).
    mutating func nextIndices() -> [Int] {
        if fixed { return Array(windows.indices) }
        if cachedOrder?.epoch != epoch { cachedOrder = (epoch, order(epoch: epoch)) }
        let order = cachedOrder!.order
        let picked = Array(order[index..<min(order.count, index + batch)])
        index += batch
        if index >= order.count { (epoch, index) = (epoch + 1, 0) }
        return picked
    }

    /// The next batch's token rows, unpadded; advances the position.
    public mutating func next() -> [[Int]] { nextIndices().map { windows[$0] } }

    /// The next batch, padded, with its labels; advances the position.
    public mutating func nextBatch() -> LabeledBatch {
        let picked = nextIndices()
        guard let labels else {
            let rows = picked.map { windows[$0] }
            return LabeledBatch(tokens: rows, labels: nil, realTokens: rows.reduce(0) { $0 + $1.count })
        }
        if let segments {
            return .packed(picked.map { PackedWindow(tokens: windows[$0], labels: labels[$0], lengths: segments[$0]) }, padID: padID)
        }
        return .padded(picked.map { windows[$0] }, labels: picked.map { labels[$0] }, padID: padID)
    }
}
