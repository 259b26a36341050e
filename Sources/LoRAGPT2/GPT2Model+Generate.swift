// Greedy continuation of equal-length prompts, all in one batch: a forward per new token over the whole
// sequence so far (short answers; `lora generate` is the place for long ones).
import LoRARuntime

extension GPT2Model {
    /// The `count` most likely next tokens after each prompt, chosen one at a time (no dropout).
    public func greedyContinuation(_ prompts: [[Int]], count: Int) throws -> [[Int]] {
        let wasTraining = training
        training = false
        defer { training = wasTraining }
        var sequences = prompts
        for _ in 0..<count {
            let length = sequences[0].count
            let logits = try forward(sequences).toArray()
            let vocab = config.vocabSize
            for b in sequences.indices {
                let row = logits[((b + 1) * length - 1) * vocab..<((b + 1) * length) * vocab]
                sequences[b].append(row.indices.max { row[$0] < row[$1] }! - row.startIndex)
            }
        }
        return sequences.map { Array($0.suffix(count)) }
    }
}
