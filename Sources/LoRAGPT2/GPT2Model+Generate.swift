// Generation: a KV cache (every layer's keys and values for the tokens so far, on the device), so each new token
// costs one position's forward instead of the whole sequence's; sampling with temperature and top-k; and greedy
// continuation of equal-length prompts for quick checks.
import Foundation
import LoRARuntime

/// Keys and values of every layer for up to `capacity` positions of `batch` sequences: per layer two
/// `[batch·capacity, C]` tensors, heads side by side as in c_attn's output.
public final class KVCache {
    public let batch: Int, capacity: Int
    /// Positions filled so far.
    public internal(set) var length = 0
    let layers: [(k: Tensor, v: Tensor)]

    public init(model: GPT2Model, batch: Int = 1, capacity: Int? = nil) throws {
        let capacity = capacity ?? model.config.positions
        guard batch >= 1, capacity >= 1, capacity <= model.config.positions else {
            throw LoRAError.invalidArgument("KV cache: batch \(batch) and capacity \(capacity) must be ≥ 1, capacity ≤ \(model.config.positions) positions")
        }
        (self.batch, self.capacity) = (batch, capacity)
        layers = try (0..<model.config.layers).map { _ in
            (try model.backend.empty([batch * capacity, model.config.width]), try model.backend.empty([batch * capacity, model.config.width]))
        }
    }
}

/// How the next token is picked from the logits.
public struct Sampling: Sendable {
    /// 0: the most likely token (greedy).
    public var temperature: Float = 0
    /// Keep only the k most likely tokens (0: all).
    public var topK = 0
    public var seed: UInt64 = 0
    public init(temperature: Float = 0, topK: Int = 0, seed: UInt64 = 0) { (self.temperature, self.topK, self.seed) = (temperature, topK, seed) }
}

extension GPT2Model {
    /// Logits `[B·T, V]` for tokens that continue `cache`'s sequences; their keys and values are appended.
    public func forward(_ tokens: [[Int]], appendingTo cache: KVCache) throws -> Tensor {
        guard tokens.count == cache.batch else {
            throw LoRAError.shapeMismatch("KV cache: \(tokens.count) sequences for a cache of \(cache.batch)")
        }
        guard cache.length + (tokens.first?.count ?? 0) <= cache.capacity else {
            throw LoRAError.invalidArgument("KV cache: \(cache.length) cached + \(tokens.first?.count ?? 0) new positions exceed its \(cache.capacity)")
        }
        return try forward(tokens, cache: cache)
    }

    /// Up to `maxTokens` tokens after `prompt`, sampled one at a time with a KV cache; stops at `stop` (when given)
    /// or at the model's last position. `onToken` sees each token as it is chosen.
    public func generate(prompt: [Int], maxTokens: Int, sampling: Sampling = Sampling(), stop: Int? = nil,
                         onToken: (Int) throws -> Void = { _ in }) throws -> [Int] {
        guard !prompt.isEmpty else { throw LoRAError.invalidArgument("generate: the prompt has no tokens") }
        let wasTraining = training
        training = false
        defer { training = wasTraining }
        let cache = try KVCache(model: self)
        var generator = SeededGenerator(seed: sampling.seed)
        var logits = try forward([prompt], appendingTo: cache)
        var produced: [Int] = []
        while produced.count < maxTokens {
            let rows = logits.shape[0], vocab = config.vocabSize
            let last = Array(try logits.toArray()[(rows - 1) * vocab..<rows * vocab])
            let token = Self.sample(last, sampling, &generator)
            if token == stop { break }
            produced.append(token)
            try onToken(token)
            guard cache.length < cache.capacity else { break }
            logits = try forward([[token]], appendingTo: cache)
        }
        return produced
    }

    /// A token from one row of logits: argmax at temperature 0, else softmax(logits/T) over the top k.
    static func sample(_ logits: [Float], _ s: Sampling, _ generator: inout SeededGenerator) -> Int {
        guard s.temperature > 0 else { return logits.indices.max { logits[$0] < logits[$1] }! }
        var candidates = Array(logits.indices)
        if s.topK > 0 && s.topK < candidates.count {
            candidates = Array(candidates.sorted { logits[$0] > logits[$1] }.prefix(s.topK))
        }
        let top = candidates.map { logits[$0] }.max()!
        let weights = candidates.map { Foundation.exp(Double((logits[$0] - top) / s.temperature)) }
        var r = Double(generator.next() >> 11) / Double(1 << 53) * weights.reduce(0, +)
        for (candidate, weight) in zip(candidates, weights) {
            r -= weight
            if r < 0 { return candidate }
        }
        return candidates.last!
    }

    /// The `count` most likely next tokens after each of several equal-length prompts (no dropout, no cache:
    /// one forward over the whole batch per token).
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
                let row = Array(logits[((b + 1) * length - 1) * vocab..<((b + 1) * length) * vocab])
                sequences[b].append(row.indices.max { row[$0] < row[$1] }!)
            }
        }
        return sequences.map { Array($0.suffix(count)) }
    }
}
