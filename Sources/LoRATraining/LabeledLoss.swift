// The eval loss of labelled examples (JSONL data): the token-weighted mean over every trained target, whatever the
// batching. Examples are taken longest first, `batch` at a time, each batch right-padded (pad id, labels -100), so
// rows of similar length share a forward and padding stays small; padding after every real token changes no real
// token's logits under causal attention.
import LoRAModels

extension LanguageModel {
    /// Mean next-token cross-entropy over every target whose label is not -100, and how many there were.
    /// - Parameters:
    ///   - sequences: ids, any lengths ≥ 2; `labels`: the same shapes, unshifted (-100: no loss).
    ///   - batch: rows per forward; `padID`: what shorter rows are padded with.
    ///   - progress: (batches done, batches in all, mean so far).
    public func meanLoss(_ sequences: [[Int]], labels: [[Int]], batch: Int, padID: Int,
                         progress: (Int, Int, Double) -> Void = { _, _, _ in }) throws -> (loss: Double, predictions: Int) {
        precondition(sequences.count == labels.count, "one label row per sequence")
        let wasTraining = training
        training = false
        defer { training = wasTraining }
        let order = sequences.indices.sorted { (sequences[$0].count, $1) > (sequences[$1].count, $0) }
        let size = max(1, batch)
        let groups = stride(from: 0, to: order.count, by: size).map { Array(order[$0..<min(order.count, $0 + size)]) }
        var (total, count) = (0.0, 0)
        for (index, group) in groups.enumerated() {
            let rows = group.map { sequences[$0] }, rowLabels = group.map { labels[$0] }
            // A group with nothing to score adds nothing (the model's loss refuses an all-ignored batch).
            guard rowLabels.contains(where: { $0.dropFirst().contains { $0 != -100 } }) else { continue }
            let padded = LabeledBatch.padded(rows, labels: rowLabels, padID: padID)
            let (loss, predictions) = try loss(padded.tokens, labels: padded.labels)
            total += Double(loss) * Double(predictions)
            count += predictions
            progress(index + 1, groups.count, total / Double(max(count, 1)))
        }
        return (count > 0 ? total / Double(count) : .nan, count)
    }
}
