// The eval loss of labelled examples (JSONL data): the token-weighted mean over every trained target, whatever the
// batching. Examples are taken longest first, `batch` at a time, each batch right-padded (pad id, labels -100), so
// rows of similar length share a forward and padding stays small; padding after every real token changes no real
// token's logits under causal attention. Packed (`packing`: a window length), the examples go into windows as
// training packs them (Packing.swift), each example attending only within itself: the same mean.
import LoRAModels

extension LanguageModel {
    /// Mean next-token cross-entropy over every target whose label is not -100, and how many there were.
    /// - Parameters:
    ///   - sequences: ids, any lengths ≥ 2; `labels`: the same shapes, unshifted (-100: no loss).
    ///   - batch: rows per forward; `padID`: what shorter rows are padded with.
    ///   - packing: pack the examples into windows of this many tokens (each example at most that long).
    ///   - progress: (batches done, batches in all, mean so far).
    public func meanLoss(_ sequences: [[Int]], labels: [[Int]], batch: Int, padID: Int, packing: Int? = nil,
                         progress: (Int, Int, Double) -> Void = { _, _, _ in }) throws -> (loss: Double, predictions: Int) {
        precondition(sequences.count == labels.count, "one label row per sequence")
        let wasTraining = training
        training = false
        defer { training = wasTraining }
        if let packing {
            let windows = try Packing.pack(sequences, labels: labels, length: packing)
            return try meanLoss(of: stride(from: 0, to: windows.count, by: max(1, batch)).map {
                LabeledBatch.packed(Array(windows[$0..<min(windows.count, $0 + max(1, batch))]), padID: padID)
            }, progress: progress)
        }
        let order = sequences.indices.sorted { (sequences[$0].count, $1) > (sequences[$1].count, $0) }
        let size = max(1, batch)
        let groups = stride(from: 0, to: order.count, by: size).map { Array(order[$0..<min(order.count, $0 + size)]) }
        return try meanLoss(of: groups.map { group in
            LabeledBatch.padded(group.map { sequences[$0] }, labels: group.map { labels[$0] }, padID: padID)
        }, progress: progress)
    }

    /// The token-weighted mean over batches (padded or packed, with labels).
    private func meanLoss(of batches: [LabeledBatch], progress: (Int, Int, Double) -> Void) throws -> (loss: Double, predictions: Int) {
        var (total, count) = (0.0, 0)
        for (index, batch) in batches.enumerated() {
            // A batch with nothing to score adds nothing (the model's loss refuses an all-ignored batch). Packed rows'
            // first labels are -100 at every example's start, so this sees only targets the loss scores.
            guard let labels = batch.labels, labels.contains(where: { $0.dropFirst().contains { $0 != -100 } }) else { continue }
            let (loss, predictions) = try loss(batch.tokens, labels: labels, segments: batch.segments)
            total += Double(loss) * Double(predictions)
            count += predictions
            progress(index + 1, batches.count, total / Double(max(count, 1)))
        }
        return (count > 0 ? total / Double(count) : .nan, count)
    }
}
