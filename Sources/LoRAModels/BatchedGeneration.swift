// Batched generation with continuous batching: many requests, each with its own adapter (by slot), prompt length,
// sampling and token budget, decoded together. Up to `maxBatch` rows are active; each decode step runs ONE forward
// over every active row (one token each), the rows choosing their adapters through the multi-LoRA banks; a row that
// finishes frees its place and the next waiting request is admitted before the next step.
//
// Layout: the active rows share one KV cache (`[rows·capacity, width]` per layer), right-aligned: at column pointer L
// (the cache's length) row b holds its ℓ_b cached positions in columns L−ℓ_b..<L. A step writes every row's new key
// at column L; the row's query is rotated at its own position ℓ_b and attends from column L−ℓ_b on (the attention
// op's segment starts), so the zero columns before it are never seen. A new request's prompt is prefilled alone
// (batch 1, its own adapter) into a temporary cache; whenever the set of rows changes (admission or finish) the
// shared cache is rebuilt for the new rows, copying each row's keys and values into place (one block copy per row,
// layer and part), so no column pointer runs past what the rows still need.
import LoRARuntime

/// One generation request.
public struct GenerationRequest: Sendable {
    public var id: String
    /// The slot of a loaded adapter (`loadAdapter(name:folder:)`), or -1 for the base model.
    public var adapterSlot: Int
    public var prompt: [Int]
    public var maxTokens: Int
    public var sampling: Sampling
    /// Token ids that end the request (not included in its output).
    public var stop: Set<Int>
    public init(id: String, adapterSlot: Int = -1, prompt: [Int], maxTokens: Int, sampling: Sampling = Sampling(), stop: Set<Int> = []) {
        (self.id, self.adapterSlot, self.prompt, self.maxTokens, self.sampling, self.stop) = (id, adapterSlot, prompt, maxTokens, sampling, stop)
    }
}

/// What a request produced.
public struct GenerationResult: Sendable, Equatable {
    public enum FinishReason: String, Sendable { case stop, length }
    public let id: String
    public let adapterSlot: Int
    /// The new tokens (without the prompt and without the stop token).
    public let ids: [Int]
    /// `stop`: a stop token came; `length`: `maxTokens` or the model's last position was reached.
    public let finishReason: FinishReason
}

/// Counts of the last `run`: how batched it was.
public struct BatchedGenerationStats: Sendable, Equatable {
    /// Decode forwards (each over every active row) and the row-tokens they produced.
    public var decodeSteps = 0, decodedRows = 0
    /// Prefill forwards (one per request) and shared-cache rebuilds.
    public var prefills = 0, rebuilds = 0
    /// Mean rows per decode forward.
    public var meanBatch: Double { decodeSteps == 0 ? 0 : Double(decodedRows) / Double(decodeSteps) }
}

/// Runs requests through a model with continuous batching.
public final class BatchedGenerator {
    public let model: any LanguageModel
    public let maxBatch: Int
    public private(set) var stats = BatchedGenerationStats()

    public init(model: any LanguageModel, maxBatch: Int) throws {
        guard maxBatch >= 1 else { throw LoRAError.invalidArgument("batched generation: max batch \(maxBatch) must be ≥ 1") }
        (self.model, self.maxBatch) = (model, maxBatch)
    }

    /// A request in flight.
    private struct Row {
        let index: Int
        let request: GenerationRequest
        var generator: SeededGenerator
        var produced: [Int] = []
        /// Positions cached (the prompt and every produced token fed back so far).
        var length: Int
        /// The token to feed next.
        var next = 0
        /// Where its keys and values are now: a temporary batch-1 cache after prefill, else the shared cache's row.
        var prefillCache: KVCache?
        /// Its row in the shared cache once copied there.
        var sharedRow = 0
    }

    /// Throws for a request the model cannot run (before anything runs).
    public func check(_ request: GenerationRequest) throws {
        let name = "request '\(request.id)'"
        guard !request.prompt.isEmpty else { throw LoRAError.invalidArgument("\(name): the prompt has no tokens") }
        guard request.prompt.count < model.maxPositions else {
            throw LoRAError.invalidArgument("\(name): the prompt's \(request.prompt.count) tokens leave no room in the model's \(model.maxPositions) positions")
        }
        if let bad = request.prompt.first(where: { !(0..<model.vocabularySize).contains($0) }) {
            throw LoRAError.invalidArgument("\(name): token id \(bad) is outside the vocabulary 0..<\(model.vocabularySize)")
        }
        guard request.maxTokens >= 1 else { throw LoRAError.invalidArgument("\(name): max_tokens \(request.maxTokens) must be ≥ 1") }
        guard request.sampling.temperature >= 0, request.sampling.temperature.isFinite, request.sampling.topK >= 0 else {
            throw LoRAError.invalidArgument("\(name): temperature must be ≥ 0 and top_k ≥ 0")
        }
        if request.adapterSlot >= 0 && model.adapterSlots.adapter(slot: request.adapterSlot) == nil {
            throw AdapterSlotError.unknownSlot(request.adapterSlot, loaded: model.adapterNames)
        }
    }

    /// Runs every request; results in request order. Each request's tokens are what `generate(prompt:maxTokens:
    /// sampling:stop:)` gives for it alone with only its adapter. `onFinish` sees each result as it completes.
    public func run(_ requests: [GenerationRequest],
                    onFinish: (Int, GenerationResult) throws -> Void = { _, _ in }) throws -> [GenerationResult] {
        for request in requests { try check(request) }
        stats = BatchedGenerationStats()
        let wasTraining = model.training
        model.training = false
        defer { model.training = wasTraining }
        var results = [GenerationResult?](repeating: nil, count: requests.count)
        var waiting = requests.indices.makeIterator()
        var rows: [Row] = []
        var shared: KVCache?
        var changed = true

        // A row whose last sampled token ended it reports; else its token is queued to be fed.
        func accept(_ row: inout Row, token: Int) throws -> Bool {
            let request = row.request
            var reason: GenerationResult.FinishReason?
            if request.stop.contains(token) {
                reason = .stop
            } else {
                row.produced.append(token)
                row.next = token
                // As `generate`: no forward once the budget or the model's positions are used up.
                if row.produced.count >= request.maxTokens || row.length >= model.maxPositions { reason = .length }
            }
            guard let reason else { return false }
            let result = GenerationResult(id: request.id, adapterSlot: request.adapterSlot, ids: row.produced, finishReason: reason)
            results[row.index] = result
            try onFinish(row.index, result)
            return true
        }

        while true {
            // Admit waiting requests into free places: prefill each alone (its adapter), sample its first token.
            while rows.count < maxBatch, let index = waiting.next() {
                let request = requests[index]
                let cache = try KVCache(model: model, capacity: request.prompt.count)
                let logits = try model.forward([request.prompt], cache: cache, adapters: [request.adapterSlot]).toArray()
                stats.prefills += 1
                let vocab = model.vocabularySize, p = request.prompt.count
                var row = Row(index: index, request: request, generator: SeededGenerator(seed: request.sampling.seed),
                              length: p, prefillCache: cache)
                let token = request.sampling.sample(Array(logits[(p - 1) * vocab..<p * vocab]), &row.generator)
                if try !accept(&row, token: token) {
                    rows.append(row)
                    changed = true
                }
            }
            if rows.isEmpty { break }
            if changed {
                shared = try rebuild(rows, from: shared)
                for i in rows.indices { (rows[i].prefillCache, rows[i].sharedRow) = (nil, i) }
                changed = false
            }
            // One decode step over every active row.
            let cache = shared!
            let column = cache.length
            let rowSet = try DeviceSegments(
                starts: model.backend.upload(rows.map { Int32(column - $0.length) }, shape: [rows.count, 1]),
                positions: model.backend.upload(rows.map { Int32($0.length) }, shape: [rows.count]))
            let adapterRows = try AdapterRows(indices: rows.map { Int32($0.request.adapterSlot) }, backend: model.backend)
            let logits = try model.withAdapterRows(adapterRows) {
                try model.forward(rows.map { [$0.next] }, cache: cache, ragged: rowSet)
            }.toArray()
            stats.decodeSteps += 1
            stats.decodedRows += rows.count
            let vocab = model.vocabularySize
            var kept: [Row] = []
            for (b, var row) in rows.enumerated() {
                row.length += 1
                let token = row.request.sampling.sample(Array(logits[b * vocab..<(b + 1) * vocab]), &row.generator)
                if try accept(&row, token: token) { changed = true } else { kept.append(row) }
            }
            rows = kept
        }
        return results.map { $0! }
    }

    /// A fresh shared cache for `rows`, right-aligned at column max ℓ, with room for every row's remaining tokens;
    /// each row's keys and values copied from its prefill cache or from its row in `old`.
    private func rebuild(_ rows: [Row], from old: KVCache?) throws -> KVCache {
        stats.rebuilds += 1
        let geometry = model.cacheGeometry, width = geometry.width
        let column = rows.map(\.length).max()!
        let remaining = rows.map { min($0.request.maxTokens - $0.produced.count, model.maxPositions - $0.length) }.max()!
        let cache = try KVCache(backend: model.backend, geometry: geometry, batch: rows.count, capacity: column + max(remaining, 1))
        cache.advance(by: column)
        for (b, row) in rows.enumerated() {
            let source: (cache: KVCache, row: Int, column: Int)
            if let prefill = row.prefillCache {
                source = (prefill, 0, 0)
            } else {
                source = (old!, row.sharedRow, old!.length - row.length)
            }
            for layer in 0..<geometry.layers {
                for values in [false, true] {
                    let from = values ? source.cache.layers[layer].v : source.cache.layers[layer].k
                    let to = values ? cache.layers[layer].v : cache.layers[layer].k
                    try model.backend.blockCopy(BlockCopy(
                        rows: row.length, cols: width,
                        from: GEMMOperand(from, offset: (source.row * source.cache.capacity + source.column) * width, ld: width),
                        to: GEMMOperand(to, offset: (b * cache.capacity + column - row.length) * width, ld: width)))
                }
            }
        }
        return cache
    }
}
