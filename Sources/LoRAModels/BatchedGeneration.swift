// Batched generation with continuous batching: many requests, each with its own adapter (by slot), prompt length,
// sampling and token budget, decoded together. Up to `maxBatch` rows are active; each decode step runs ONE forward
// over every active row (one token each), the rows choosing their adapters through the multi-LoRA banks; a row that
// finishes frees its place and the next waiting request is admitted before the next step.
//
// Incremental: requests are submitted at any time (`submit`), `step` admits waiting ones and decodes once, reporting
// every new token (with the text it makes safe to show, when the generator decodes text) and every finish; `cancel`
// drops a request and frees its row. `run` is the whole-batch loop over that API.
//
// Layout: the active rows share one KV cache (`[rows·capacity, width]` per layer), right-aligned: at column pointer L
// (the cache's length) row b holds its ℓ_b cached positions in columns L−ℓ_b..<L. A step writes every row's new key
// at column L; the row's query is rotated at its own position ℓ_b and attends from column L−ℓ_b on (the attention
// op's segment starts), so the zero columns before it are never seen. The requests admitted in one step are
// prefilled together into a temporary cache, each row with its own adapter, in one forward per group of similar
// lengths (a full pass over the weights per forward, so one forward for many prompts instead of one each): a group's
// prompts are left-padded to its longest, T, so every prompt ends at column T − 1; row b's pad (T − p_b tokens, the
// base model alone) attends only to itself, its prompt attends from column T − p_b on at positions 0..<p_b, so each
// prompt's keys, values and logits are those it gets alone. Whenever the set of rows changes (admission, finish or
// cancel) the shared cache is rebuilt for the new rows, copying each row's keys and values into place (one block
// copy per row, layer and part) from its prefill row or its old shared row, so no column pointer runs past what the
// rows still need.
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
    /// Texts that end the request when its decoded output holds one (OpenAI's `stop`, StopStrings.swift): the text is
    /// cut before it, the ids keep every token produced. Needs a generator that decodes (`decode`).
    public var stopStrings: [String]
    public init(id: String, adapterSlot: Int = -1, prompt: [Int], maxTokens: Int, sampling: Sampling = Sampling(), stop: Set<Int> = [],
                stopStrings: [String] = []) {
        (self.id, self.adapterSlot, self.prompt, self.maxTokens, self.sampling, self.stop) = (id, adapterSlot, prompt, maxTokens, sampling, stop)
        self.stopStrings = stopStrings
    }
}

/// What a request produced.
public struct GenerationResult: Sendable, Equatable {
    public enum FinishReason: String, Sendable { case stop, length }
    public let id: String
    public let adapterSlot: Int
    /// The new tokens (without the prompt and without the stop token).
    public let ids: [Int]
    /// `stop`: a stop token or stop string came; `length`: `maxTokens` or the model's last position was reached.
    public let finishReason: FinishReason
    /// The decoded output, cut before a stop string; nil when the generator does not decode.
    public let text: String?
}

/// What a step reports.
public enum GenerationEvent: Sendable {
    /// A request's new token, and the text that became safe to show with it ("" while a possible stop string or an
    /// unfinished character is held back, and always "" when the generator does not decode).
    case token(ticket: Int, token: Int, text: String)
    /// A request ended; `text` is what was still held back (its output is the tokens' texts and this, in order).
    case finished(ticket: Int, result: GenerationResult, text: String)
}

/// Counts of the last `run` (or, for `step`, since the generator was made): how batched it was.
public struct BatchedGenerationStats: Sendable, Equatable {
    /// Decode forwards (each over every active row) and the row-tokens they produced.
    public var decodeSteps = 0, decodedRows = 0
    /// Prefill forwards (each over a group of the requests admitted in one step) and shared-cache rebuilds.
    public var prefills = 0, rebuilds = 0
    public init() {}
    /// Mean rows per decode forward.
    public var meanBatch: Double { decodeSteps == 0 ? 0 : Double(decodedRows) / Double(decodeSteps) }
}

/// Runs requests through a model with continuous batching.
public final class BatchedGenerator {
    public let model: any LanguageModel
    public let maxBatch: Int
    /// The text of output ids (a tokenizer's decode); nil: no text (`GenerationResult.text` is nil, no stop strings).
    public let decode: (([Int]) throws -> String)?
    /// Tokens one prefill forward may hold, padding included (rows × the group's longest prompt): it bounds the
    /// forward's logits `[tokens, V]` and attention scores. A longer prompt is prefilled alone.
    public let maxPrefillTokens: Int
    public private(set) var stats = BatchedGenerationStats()

    public init(model: any LanguageModel, maxBatch: Int, decode: (([Int]) throws -> String)? = nil,
                maxPrefillTokens: Int = 2048) throws {
        guard maxBatch >= 1 else { throw LoRAError.invalidArgument("batched generation: max batch \(maxBatch) must be ≥ 1") }
        guard maxPrefillTokens >= 1 else {
            throw LoRAError.invalidArgument("batched generation: max prefill tokens \(maxPrefillTokens) must be ≥ 1")
        }
        (self.model, self.maxBatch, self.decode, self.maxPrefillTokens) = (model, maxBatch, decode, maxPrefillTokens)
    }

    /// A request in flight.
    private struct Row {
        let ticket: Int
        let request: GenerationRequest
        var generator: SeededGenerator
        var produced: [Int] = []
        /// Its output text (when the generator decodes).
        var text: IncrementalText?
        /// Positions cached (the prompt and every produced token fed back so far).
        var length: Int
        /// The token to feed next.
        var next = 0
        /// Where its keys and values are after prefill, until copied into the shared cache: a temporary cache's row
        /// and the column its prompt starts at (its ℓ positions in columns column..<column + ℓ).
        var prefill: (cache: KVCache, row: Int, column: Int)?
        /// Its row in the shared cache once copied there.
        var sharedRow = 0
    }

    private var nextTicket = 0
    private var waiting: [(ticket: Int, request: GenerationRequest)] = []
    private var rows: [Row] = []
    private var shared: KVCache?
    /// The set of rows changed since the shared cache was built.
    private var changed = true

    /// Requests submitted and not yet admitted, and requests decoding.
    public var waitingCount: Int { waiting.count }
    public var activeCount: Int { rows.count }
    public var hasWork: Bool { !waiting.isEmpty || !rows.isEmpty }
    /// The adapter slots of every waiting and active request.
    public var slotsInUse: Set<Int> { Set(waiting.map(\.request.adapterSlot) + rows.map(\.request.adapterSlot)) }

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
        if !request.stopStrings.isEmpty {
            guard decode != nil else { throw LoRAError.invalidArgument("\(name): stop strings need a generator that decodes text") }
            guard request.stopStrings.allSatisfy({ !$0.isEmpty }) else { throw LoRAError.invalidArgument("\(name): a stop string is empty") }
        }
    }

    /// Queues a request (checked first) behind those waiting; returns its ticket, which its events carry.
    @discardableResult
    public func submit(_ request: GenerationRequest) throws -> Int {
        try check(request)
        defer { nextTicket += 1 }
        waiting.append((nextTicket, request))
        return nextTicket
    }

    /// Drops a waiting or active request (its client went away): its row is free for the next step and nothing more is
    /// reported for it. Returns false when no such request is waiting or active.
    @discardableResult
    public func cancel(_ ticket: Int) -> Bool {
        if let i = waiting.firstIndex(where: { $0.ticket == ticket }) {
            waiting.remove(at: i)
            return true
        }
        guard let i = rows.firstIndex(where: { $0.ticket == ticket }) else { return false }
        rows.remove(at: i)
        changed = true
        if rows.isEmpty { shared = nil }
        return true
    }

    /// Drops every request (after a step threw, the rows' state is unknown); returns their tickets.
    public func cancelAll() -> [Int] {
        defer { (waiting, rows, shared, changed) = ([], [], nil, true) }
        return waiting.map(\.ticket) + rows.map(\.ticket)
    }

    /// Runs every request; results in request order. Each request's tokens are what `generate(prompt:maxTokens:
    /// sampling:stop:)` gives for it alone with only its adapter. `onFinish` sees each result as it completes.
    /// Requests submitted before and not finished are run too, but not returned.
    public func run(_ requests: [GenerationRequest],
                    onFinish: (Int, GenerationResult) throws -> Void = { _, _ in }) throws -> [GenerationResult] {
        for request in requests { try check(request) }
        stats = BatchedGenerationStats()
        var index: [Int: Int] = [:]
        for (i, request) in requests.enumerated() { index[try submit(request)] = i }
        var results = [GenerationResult?](repeating: nil, count: requests.count)
        while hasWork {
            try step { event in
                guard case .finished(let ticket, let result, _) = event, let i = index[ticket] else { return }
                results[i] = result
                try onFinish(i, result)
            }
        }
        return results.map { $0! }
    }

    /// One step: admits waiting requests into free rows (prefilled together, each with its adapter, its first token
    /// sampled), then one decode forward over every active row. Reports each new token and each finish, in order.
    public func step(_ report: (GenerationEvent) throws -> Void) throws {
        let wasTraining = model.training
        model.training = false
        defer { model.training = wasTraining }

        // A row whose last sampled token ended it reports its finish; else its token is queued to be fed.
        func accept(_ row: inout Row, token: Int) throws -> Bool {
            let request = row.request
            var reason: GenerationResult.FinishReason?
            var decoded: String?  // the output's text after this token, decoded once
            if request.stop.contains(token) {
                reason = .stop
            } else {
                row.produced.append(token)
                row.next = token
                var delta = ""
                if let decode, row.text != nil {
                    decoded = try decode(row.produced)
                    delta = row.text!.update(decoded: decoded!)
                    if row.text!.stopped { reason = .stop }
                }
                // As `generate`: no forward once the budget or the model's positions are used up.
                if reason == nil && (row.produced.count >= request.maxTokens || row.length >= model.maxPositions) { reason = .length }
                try report(.token(ticket: row.ticket, token: token, text: delta))
            }
            guard let reason else { return false }
            var tail = ""
            if let decode, row.text != nil { tail = row.text!.update(decoded: try decoded ?? decode(row.produced), final: true) }
            let result = GenerationResult(id: request.id, adapterSlot: request.adapterSlot, ids: row.produced,
                                          finishReason: reason, text: row.text?.text)
            try report(.finished(ticket: row.ticket, result: result, text: tail))
            return true
        }

        // Admit waiting requests into free places: prefill them together (each its adapter), sample first tokens.
        let admitted = Array(waiting.prefix(maxBatch - rows.count))
        waiting.removeFirst(admitted.count)
        var prefilled = [(cache: KVCache, row: Int, column: Int, logits: [Float])?](repeating: nil, count: admitted.count)
        for group in prefillGroups(admitted.map(\.request.prompt.count)) {
            let (cache, logits) = try prefill(group.map { admitted[$0].request })
            let vocab = model.vocabularySize
            for (b, i) in group.enumerated() {
                prefilled[i] = (cache, b, cache.length - admitted[i].request.prompt.count,
                                Array(logits[b * vocab..<(b + 1) * vocab]))
            }
        }
        for ((ticket, request), prefill) in zip(admitted, prefilled.map { $0! }) {
            var row = Row(ticket: ticket, request: request, generator: SeededGenerator(seed: request.sampling.seed),
                          text: decode == nil ? nil : IncrementalText(stops: StopStrings(request.stopStrings)),
                          length: request.prompt.count, prefill: (prefill.cache, prefill.row, prefill.column))
            let token = request.sampling.sample(prefill.logits, &row.generator)
            if try !accept(&row, token: token) {
                rows.append(row)
                changed = true
            }
        }
        if rows.isEmpty { return }
        if changed {
            shared = try rebuild(rows, from: shared)
            for i in rows.indices { (rows[i].prefill, rows[i].sharedRow) = (nil, i) }
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
        if rows.isEmpty { shared = nil }  // its memory, until the next admission
    }

    /// The admitted prompts (by length, in admission order) in prefill groups, each a list of indices: sorted by
    /// length, a prompt joins the group before it unless the padded group would pass `maxPrefillTokens` or hold more
    /// padding than prompt tokens (one long prompt does not make many short ones pay for its length).
    private func prefillGroups(_ lengths: [Int]) -> [[Int]] {
        var groups: [[Int]] = []
        var tokens = 0  // the last group's prompt tokens
        for i in lengths.indices.sorted(by: { (lengths[$0], $0) < (lengths[$1], $1) }) {
            // Sorted, so this prompt is the group's longest: the group would pad every row to its length.
            if let last = groups.last, (last.count + 1) * lengths[i] <= min(maxPrefillTokens, 2 * (tokens + lengths[i])) {
                groups[groups.count - 1].append(i)
                tokens += lengths[i]
            } else {
                groups.append([i])
                tokens = lengths[i]
            }
        }
        return groups
    }

    /// Prefills `requests` in one forward into a fresh cache of one row each, `[B, T]` for T the longest prompt:
    /// prompt b is left-padded to T (it sits in columns T − p_b..<T). Returns the cache and each prompt's last logits
    /// `[B, V]` (host).
    private func prefill(_ requests: [GenerationRequest]) throws -> (KVCache, [Float]) {
        stats.prefills += 1
        let backend = model.backend
        let t = requests.map(\.prompt.count).max()!
        let cache = try KVCache(model: model, batch: requests.count, capacity: t)
        let logits: Tensor
        if requests.allSatisfy({ $0.prompt.count == t }) {  // equal lengths (or alone): the plain form, no padding
            logits = try model.forward(requests.map(\.prompt), cache: cache, adapters: requests.map(\.adapterSlot), logits: .last)
        } else {
            // Pad token j of row b (j < T − p_b) attends to the pad's keys 0...j at position j, through the base model
            // alone; prompt token j attends from column T − p_b on at position j − (T − p_b), with its adapter.
            let pads = requests.map { t - $0.prompt.count }
            let tokens = requests.map { Array(repeating: 0, count: t - $0.prompt.count) + $0.prompt }
            let rows = try DeviceSegments(
                starts: backend.upload(pads.flatMap { pad in (0..<t).map { Int32($0 < pad ? 0 : pad) } }, shape: [requests.count, t]),
                positions: backend.upload(pads.flatMap { pad in (0..<t).map { Int32($0 < pad ? $0 : $0 - pad) } },
                                          shape: [requests.count * t]))
            // Segments: row b's pad (base model), then its prompt (its adapter); a prompt's rows are one segment, as alone.
            let adapterRows = try AdapterRows(
                segmentStarts: [0] + pads.indices.flatMap { b in [b * t + pads[b], (b + 1) * t] },
                adapters: requests.flatMap { [-1, Int32(clamping: $0.adapterSlot)] }, backend: backend)
            logits = try model.withAdapterRows(adapterRows) { try model.forward(tokens, cache: cache, ragged: rows, logits: .last) }
        }
        return (cache, try logits.toArray())
    }

    /// A fresh shared cache for `rows`, right-aligned at column max ℓ, with room for every row's remaining tokens;
    /// each row's keys and values copied from its prefill cache's row or from its row in `old`.
    private func rebuild(_ rows: [Row], from old: KVCache?) throws -> KVCache {
        stats.rebuilds += 1
        let geometry = model.cacheGeometry, width = geometry.width
        let column = rows.map(\.length).max()!
        let remaining = rows.map { min($0.request.maxTokens - $0.produced.count, model.maxPositions - $0.length) }.max()!
        let cache = try KVCache(backend: model.backend, geometry: geometry, batch: rows.count, capacity: column + max(remaining, 1))
        cache.advance(by: column)
        for (b, row) in rows.enumerated() {
            let source: (cache: KVCache, row: Int, column: Int)
            if let prefill = row.prefill {
                source = prefill
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
