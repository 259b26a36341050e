// What a training run feeds the model: a fixed batch (every step sees the whole array), or a token stream cut
// into windows of seq + 1 tokens (seq predictions each), shuffled per epoch by the seed, taken `batch` at a time.
import LoRARuntime

/// Batches for training, with a position a checkpoint can save and restore.
public struct TrainingData: Sendable {
    /// The windows (all of one length).
    public let windows: [[Int]]
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
    }

    /// A token stream cut into windows of `seq + 1` tokens (the tail that does not fill one is dropped).
    public init(stream: [Int], seq: Int, batch: Int, seed: UInt64) throws {
        guard seq >= 1, batch >= 1 else { throw TrainingError.invalidSetup("the sequence length (\(seq)) and batch size (\(batch)) must be at least 1") }
        let windows = stride(from: 0, to: stream.count - seq, by: seq + 1).map { Array(stream[$0..<$0 + seq + 1]) }
        guard !windows.isEmpty else {
            throw TrainingError.invalidSetup("the data has \(stream.count) tokens, fewer than one window of \(seq) + 1")
        }
        (self.windows, self.batch, fixed, self.seed) = (windows, batch, false, seed)
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
        let kind = fixed ? "a fixed batch of \(windows.count) sequences" : "\(windows.count) windows"
        return "\(kind) of \(windows.first?.count ?? 0) tokens (FNV-1a \(String(hash, radix: 16)))"
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

    /// The next batch; advances the position (a new epoch starts when this one runs out).
    public mutating func next() -> [[Int]] {
        if fixed { return windows }
        if cachedOrder?.epoch != epoch { cachedOrder = (epoch, order(epoch: epoch)) }
        let order = cachedOrder!.order
        let picked = order[index..<min(order.count, index + batch)].map { windows[$0] }
        index += batch
        if index >= order.count { (epoch, index) = (epoch + 1, 0) }
        return picked
    }
}
