// Packing (`--packing`): labelled examples concatenated into windows of at most `--seq` tokens, so a batch of short
// examples is not mostly padding. Strategy: first-fit decreasing, once, before training — examples longest first
// (file order among equal lengths), each into the first window with room for it, else into a new one — then the
// windows are shuffled per epoch like unpacked examples. Each example keeps its own attention block and positions
// (PackedSegments), and its first label becomes -100 (HF's DataCollatorWithFlattening), so no example is scored on
// a prediction made from another's tokens: the token-weighted loss is that of unpacked training.
// Windows are not padded here; a batch pads its rows to the longest (pad id, labels -100) as unpacked batches do,
// the padding being one more segment of its row.
import LoRAModels

/// Examples concatenated into one row.
public struct PackedWindow: Sendable, Equatable {
    /// The examples' ids, one after another.
    public var tokens: [Int]
    /// Their labels (unshifted), each example's first set to -100.
    public var labels: [Int]
    /// The examples' lengths, in order.
    public var lengths: [Int]

    /// Each token's position within its example (HF's `position_ids` for packed rows).
    public var positions: [Int] { lengths.flatMap { 0..<$0 } }
}

public enum Packing {
    /// Packs examples (ids with unshifted labels of the same length, each at most `length` tokens) into windows of
    /// at most `length` tokens by first-fit decreasing; windows come in the order they were opened.
    public static func pack(_ examples: [[Int]], labels: [[Int]], length: Int) throws -> [PackedWindow] {
        guard length >= 2 else { throw TrainingError.invalidSetup("packing needs windows of at least 2 tokens, got \(length)") }
        guard examples.count == labels.count, zip(examples, labels).allSatisfy({ $0.count == $1.count }) else {
            throw TrainingError.invalidSetup("every example needs labels of its own length")
        }
        if let long = examples.firstIndex(where: { $0.count > length || $0.isEmpty }) {
            throw TrainingError.invalidSetup("example \(long + 1) has \(examples[long].count) tokens; packing into windows of "
                + "\(length) needs 1...\(length) (truncate examples to --seq first)")
        }
        let order = examples.indices.sorted { (examples[$0].count, $1) > (examples[$1].count, $0) }
        let shortest = examples.map(\.count).min() ?? 1
        var windows: [PackedWindow] = []
        // Windows that can still take the shortest example, with the tokens left in each, in the order opened.
        var open: [(window: Int, room: Int)] = []
        for index in order {
            let (ids, exampleLabels) = (examples[index], labels[index])
            var slot = open.firstIndex { $0.room >= ids.count }
            if slot == nil {
                windows.append(PackedWindow(tokens: [], labels: [], lengths: []))
                open.append((windows.count - 1, length))
                slot = open.count - 1
            }
            let target = open[slot!].window
            windows[target].tokens += ids
            windows[target].labels += [-100] + exampleLabels.dropFirst()
            windows[target].lengths.append(ids.count)
            open[slot!].room -= ids.count
            if open[slot!].room < shortest { open.remove(at: slot!) }  // full for good: no scan passes it again
        }
        return windows
    }
}

extension LabeledBatch {
    /// Packed windows as one batch: rows right-padded to the longest (pad id, labels -100), the padding a segment of
    /// its own.
    public static func packed(_ windows: [PackedWindow], padID: Int) -> LabeledBatch {
        let longest = windows.map(\.tokens.count).max() ?? 0
        var batch = padded(windows.map(\.tokens), labels: windows.map(\.labels), padID: padID)
        batch.segments = PackedSegments(windows.map { $0.lengths + ($0.tokens.count < longest ? [longest - $0.tokens.count] : []) })
        return batch
    }
}
