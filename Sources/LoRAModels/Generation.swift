// Generation for any `LanguageModel`: sampling with temperature and top-k, one token at a time with a KV cache,
// and greedy continuation of equal-length prompts for quick checks.
import Foundation
import LoRARuntime

/// How the next token is picked from the logits.
public struct Sampling: Sendable {
    /// 0: the most likely token (greedy).
    public var temperature: Float = 0
    /// Keep only the k most likely tokens (0: all).
    public var topK = 0
    public var seed: UInt64 = 0
    public init(temperature: Float = 0, topK: Int = 0, seed: UInt64 = 0) { (self.temperature, self.topK, self.seed) = (temperature, topK, seed) }

    /// A token from one row of logits: argmax at temperature 0 (the first on ties, as torch.argmax), else
    /// softmax(logits/T) over the top k.
    public func sample(_ logits: [Float], _ generator: inout SeededGenerator) -> Int {
        guard temperature > 0 else { return logits.indices.max { logits[$0] < logits[$1] }! }
        var candidates = Array(logits.indices)
        if topK > 0 && topK < candidates.count {
            candidates = Array(candidates.sorted { logits[$0] > logits[$1] }.prefix(topK))
        }
        let top = candidates.map { logits[$0] }.max()!
        let weights = candidates.map { Foundation.exp(Double((logits[$0] - top) / temperature)) }
        var r = Double(generator.next() >> 11) / Double(1 << 53) * weights.reduce(0, +)
        for (candidate, weight) in zip(candidates, weights) {
            r -= weight
            if r < 0 { return candidate }
        }
        return candidates.last!
    }
}

extension LanguageModel {
    /// Logits `[B·T, V]` (`.last`: `[B, V]`) for tokens that continue `cache`'s sequences; their keys and values are
    /// appended.
    public func forward(_ tokens: [[Int]], appendingTo cache: KVCache, logits: LogitPositions = .all) throws -> Tensor {
        try cache.checkRoom(sequences: tokens.count, adding: tokens.first?.count ?? 0)
        return try forward(tokens, cache: cache, logits: logits)
    }

    /// Up to `maxTokens` tokens after `prompt`, sampled one at a time with a KV cache; stops at any of `stop` (not
    /// included) or at the model's last position. `onToken` sees each token as it is chosen.
    public func generate(prompt: [Int], maxTokens: Int, sampling: Sampling = Sampling(), stop: Set<Int> = [],
                         onToken: (Int) throws -> Void = { _ in }) throws -> [Int] {
        guard !prompt.isEmpty else { throw LoRAError.invalidArgument("generate: the prompt has no tokens") }
        guard prompt.count < maxPositions else {
            throw LoRAError.invalidArgument("generate: the prompt's \(prompt.count) tokens leave no room in the model's \(maxPositions) positions")
        }
        let wasTraining = training
        training = false
        defer { training = wasTraining }
        // Room for what this call can produce, not the model's whole context (131072 positions for Llama 3.1).
        let cache = try KVCache(model: self, capacity: min(maxPositions, prompt.count + maxTokens))
        var generator = SeededGenerator(seed: sampling.seed)
        var logits = try forward([prompt], appendingTo: cache, logits: .last)
        var produced: [Int] = []
        while produced.count < maxTokens {
            let token = sampling.sample(try logits.toArray(), &generator)
            if stop.contains(token) { break }
            produced.append(token)
            try onToken(token)
            guard cache.length < cache.capacity, produced.count < maxTokens else { break }
            logits = try forward([[token]], appendingTo: cache, logits: .last)
        }
        return produced
    }

    /// The `count` most likely next tokens after each of several equal-length prompts (no dropout, no cache:
    /// one forward over the whole batch per token).
    public func greedyContinuation(_ prompts: [[Int]], count: Int) throws -> [[Int]] {
        let wasTraining = training
        training = false
        defer { training = wasTraining }
        var sequences = prompts
        let greedy = Sampling()
        var unused = SeededGenerator(seed: 0)
        for _ in 0..<count {
            let length = sequences[0].count
            let logits = try forward(sequences).toArray()
            let vocab = vocabularySize
            for b in sequences.indices {
                sequences[b].append(greedy.sample(Array(logits[((b + 1) * length - 1) * vocab..<((b + 1) * length) * vocab]), &unused))
            }
        }
        return sequences.map { Array($0.suffix(count)) }
    }
}
