// The model interface every architecture family implements (GPT-2, the Llama family, ...), and what is written
// once on top of it for all of them: the loss, adapters on the model's linear modules, the trainable-parameter
// list, merging. A model computes logits for token ids, saves what its backward needs, and turns the gradient of
// the logits into gradients of its adapters (or, in full fine-tuning, of every weight).
//
// Shapes: B sequences of T tokens, N = B·T rows, V = vocabulary size.
import LoRAAdapters
import LoRAFormats
import LoRANN
import LoRARuntime

/// A causal language model on one backend.
public protocol LanguageModel: AnyObject {
    var backend: any Backend { get }
    /// config.json's `model_type` (`gpt2`, `llama`, ...).
    var modelType: String { get }
    var vocabularySize: Int { get }
    /// Positions the model attends over (GPT-2's `n_positions`, Llama's `max_position_embeddings`).
    var maxPositions: Int { get }
    /// Training mode (PyTorch's `model.train()`): adapter dropout applies. Off by default.
    var training: Bool { get set }
    /// Gradient checkpointing: a forward without a cache keeps only each block's input, and `backward` recomputes
    /// each block's forward before its backward (GradientCheckpointing.swift). The same losses and gradients bit for
    /// bit, far less memory, about one more forward of time. Off by default.
    var gradientCheckpointing: Bool { get set }
    /// Every linear layer an adapter can target, in the model's order (PEFT's module names; never the output layer).
    var linearModules: [LinearModule] { get }
    /// The output layer's weight `[V, C]` (the token embedding's, when the two are tied).
    var outputWeight: Tensor { get }
    /// The adapters' settings, once adapters were applied or loaded.
    var loraConfig: LoRAConfig? { get set }
    /// Adapters served unmerged by slot, each sequence of a batch choosing one (AdapterSlots.swift).
    var adapterSlots: AdapterSlots { get }
    /// Whether every weight trains (`enableFullTraining`).
    var isFullTraining: Bool { get }
    /// Gives every weight a gradient (and drops packed copies: `packWeightsForInference`). Adapters and full
    /// fine-tuning do not mix.
    func enableFullTraining() throws
    /// In full fine-tuning, every weight with its gradient under transformers' name (empty otherwise).
    var fullTrainingParameters: [TrainableParameter] { get }
    /// Every weight of the model under the name transformers saves it as (adapters excluded; a tied output layer
    /// once; 4-bit weights, which are several tensors each, in `quantizedItems` instead), merged adapters included.
    var namedWeights: [(name: String, tensor: Tensor)] { get }
    /// What a KV cache for this model holds per layer.
    var cacheGeometry: KVCache.Geometry { get }
    /// Ids that end generation (config.json's `eos_token_id`, one or a list); the tokenizer may add its own.
    var endOfSequenceTokens: Set<Int> { get }
    /// The modules an adapter targets when none are named: the LoRA paper's attention matrices.
    var defaultLoRATargets: LoRAConfig.Targets { get }
    /// How the 4-bit linears were quantized (from the load options or the folder's `quantization_config`); nil
    /// when none are.
    var quantization: NF4Options? { get }

    /// The forward every public form below goes through: logits `[B·T, V]` for B equal-length sequences of ids
    /// (`logits: .last`, with a cache: `[B, V]`, each sequence's last position only).
    /// Without a cache it saves what `backward` needs (with `segments`: packed rows); with one, the tokens continue
    /// the cached sequences and their keys and values are appended (with `segments`: ragged rows, each at its own
    /// positions). Call the forms in the extension below, which check their arguments.
    func forward(_ tokens: [[Int]], cache: KVCache?, segments: DeviceSegments?, logits: LogitPositions) throws -> Tensor
    /// Backward from the gradient of the loss with respect to the last forward's logits `[N, V]`; gradients accumulate.
    func backward(dlogits: Tensor) throws
    /// A generous estimate of the bytes one training step on B sequences of T tokens holds at its peak.
    func trainingStepBytes(batch: Int, length: Int) -> Int
    /// Writes the current weights (merged adapters included) as a Hugging Face folder transformers loads.
    func save(folder: String) throws
}

/// The positions a forward computes logits for.
public enum LogitPositions: Sendable {
    /// Every position: `[B·T, V]` (training, scoring).
    case all
    /// Each sequence's last position: `[B, V]`, the only logits a generation step samples from. A prompt's prefill
    /// then skips the LM head's product over its other positions (and a `[T, V]` tensor); each row's logits are
    /// bit for bit those `.all` gives it.
    case last
}

/// Token ids (or targets, -100 for none) on `backend` as int32, in the order given.
public func uploadTokenIDs(_ ids: some Collection<Int>, backend: any Backend) throws -> Tensor {
    try backend.upload(ids.map { Int32(truncatingIfNeeded: $0) }, shape: [ids.count])
}

extension LanguageModel {
    /// Logits `[B·T, V]`; saves what `backward` needs.
    public func forward(_ tokens: [[Int]]) throws -> Tensor { try forward(tokens, cache: nil) }

    // MARK: - Packed weights

    /// Lays every dense frozen weight and the output layer out once for the backend's forward products
    /// (PackedWeight.swift): each generation step then streams every weight once instead of laying it out again,
    /// at the cost of a second copy of the float32 weights (none on OpenCL). Outputs stay the same bit for bit.
    /// Merging packs again what it changes; `enableFullTraining` drops the copies, and training with adapters
    /// writes no frozen weight. 4-bit and 16-bit weights are left as they are.
    public func packWeightsForInference() throws {
        guard !isFullTraining else {
            throw LoRAError.invalidState("\(modelType): weights change every step of full fine-tuning; pack them for inference only")
        }
        for module in linearModules { try module.dense?.packForInference() }
        _ = try backend.packWeight(outputWeight, transposed: true)
    }

    /// Drops the copies `packWeightsForInference` made.
    public func releasePackedWeights() {
        for module in linearModules { module.dense?.weight.packing = nil }
        outputWeight.packing = nil
    }

    /// Logits `[B·T, V]` for B equal-length sequences of ids. Without a cache, saves what `backward` needs; with
    /// one, the tokens continue the cached sequences (positions follow them) and their keys and values are appended.
    public func forward(_ tokens: [[Int]], cache: KVCache?, logits: LogitPositions = .all) throws -> Tensor {
        try forward(tokens, cache: cache, segments: nil, logits: logits)
    }

    /// Logits `[B·T, V]` for packed rows, saving what `backward` needs: each row concatenates examples of
    /// `segments` lengths, each attending only to its own tokens at positions restarting at 0 (PackedSegments.swift),
    /// so every example's logits are those it gets alone.
    public func forward(_ tokens: [[Int]], segments: PackedSegments) throws -> Tensor {
        let (batch, length) = try checkTokens(tokens)
        try segments.check(batch: batch, length: length, model: modelType)
        return try forward(tokens, cache: nil, segments: segments.upload(to: backend, batch: batch, length: length), logits: .all)
    }

    /// Logits `[B·T, V]` for tokens continuing sequences of different lengths right-aligned in `cache` (batched
    /// generation): token r of the flattened `[B·T]` rows sits at position `rows.positions[r]` and attends to cached
    /// keys from column `rows.starts[r]` on (earlier columns belong to no one and must hold finite values). Their keys
    /// and values are appended at the cache's column `cache.length`, which may exceed the model's positions.
    public func forward(_ tokens: [[Int]], cache: KVCache, ragged rows: DeviceSegments, logits: LogitPositions = .all) throws -> Tensor {
        try cache.checkRoom(sequences: tokens.count, adding: tokens.first?.count ?? 0)
        return try forward(tokens, cache: cache, segments: rows, logits: logits)
    }

    /// The LM head: logits of the final hidden states `h` `[B·T, width]` against `head` `[V, width]`, at every
    /// position or (`.last`, generation only) at each sequence's last, read in place as rows T·width apart.
    public func headLogits(_ h: Tensor, head: Tensor, batch: Int, length: Int, positions: LogitPositions, cached: Bool) throws -> Tensor {
        switch positions {
        case .all:
            return try backend.matmul(h, head, transposeB: true)
        case .last:
            guard cached else { throw LoRAError.invalidArgument("\(modelType): last-position logits are for generation, with a KV cache") }
            let width = head.shape[1], vocab = head.shape[0]
            let logits = try backend.empty([batch, vocab])
            try backend.gemm(GEMM(m: batch, n: vocab, k: width, a: GEMMOperand(h, offset: (length - 1) * width, ld: length * width),
                                  b: GEMMOperand(head, ld: width), transposeB: true, c: GEMMOperand(logits, ld: vocab)))
            return logits
        }
    }

    /// Checks a batch: non-empty, equal lengths, within the positions after `start`, ids within the vocabulary.
    /// Returns (B, T).
    public func checkTokens(_ tokens: [[Int]], start: Int = 0) throws -> (batch: Int, length: Int) {
        guard let length = tokens.first?.count, length > 0 else { throw LoRAError.invalidArgument("\(modelType): an empty batch") }
        guard tokens.allSatisfy({ $0.count == length }) else {
            throw LoRAError.shapeMismatch("\(modelType): sequences differ in length (\(Set(tokens.map(\.count)).sorted()))")
        }
        guard start + length <= maxPositions else {
            throw LoRAError.invalidArgument("\(modelType): \(start + length) tokens exceed the model's \(maxPositions) positions")
        }
        if let bad = tokens.joined().first(where: { !(0..<vocabularySize).contains($0) }) {
            throw LoRAError.invalidArgument("\(modelType): token id \(bad) is outside the vocabulary 0..<\(vocabularySize)")
        }
        return (tokens.count, length)
    }

    // MARK: - Loss

    /// Mean next-token cross-entropy of a batch, as transformers computes it from `labels`: the prediction at
    /// position t is scored against `labels[t + 1]`, labels of -100 are ignored, and the mean runs over the rest.
    /// `labels` defaults to the tokens themselves (`labels = input_ids`). With `segments` the rows are packed
    /// (`forward(_:segments:)`), and an example's last token is not scored against the next example's first label (so
    /// the mean is that of the examples run alone). With `gradients`, also runs backward.
    /// Returns the mean and the number of scored predictions.
    public func loss(_ tokens: [[Int]], labels: [[Int]]? = nil, segments: PackedSegments? = nil,
                     gradients: Bool = false) throws -> (loss: Float, predictions: Int) {
        let labels = labels ?? tokens
        guard labels.count == tokens.count, zip(labels, tokens).allSatisfy({ $0.count == $1.count }) else {
            throw LoRAError.shapeMismatch("\(modelType) loss: labels must have the tokens' shape")
        }
        let length = tokens.first?.count ?? 0
        guard length >= 2 else { throw LoRAError.invalidArgument("\(modelType) loss: sequences need at least 2 tokens, got \(length)") }
        if let bad = labels.joined().first(where: { $0 != -100 && !(0..<vocabularySize).contains($0) }) {
            throw LoRAError.invalidArgument("\(modelType) loss: label \(bad) is neither -100 nor in the vocabulary 0..<\(vocabularySize)")
        }
        var targets = labels.flatMap { row in (0..<length).map { $0 + 1 < length ? row[$0 + 1] : -100 } }
        if let segments {
            try segments.check(batch: tokens.count, length: length, model: modelType)
            for (n, ends) in segments.endsExample.enumerated() where ends { targets[n] = -100 }
        }
        let predictions = targets.filter { $0 != -100 }.count
        guard predictions > 0 else { throw LoRAError.invalidArgument("\(modelType) loss: every label is ignored (-100)") }
        let logits = try segments.map { try forward(tokens, segments: $0) } ?? forward(tokens)
        let n = targets.count
        let losses = try backend.empty([n]), total = try backend.empty([1])
        try backend.crossEntropy(CrossEntropy(logits: logits, targets: uploadTokenIDs(targets, backend: backend),
                                              losses: losses, dlogits: gradients ? logits : nil,
                                              gradientScale: 1 / Float(predictions)))
        try backend.reduce(Reduction(.sum, of: losses, into: total))
        if gradients { try backward(dlogits: logits) }
        return (try total.toArray()[0] / Float(predictions), predictions)
    }

    /// The mean loss over many sequences (no dropout, no gradients), `batch` at a time; sequences of different
    /// lengths go in separate forwards. `progress` sees (groups done, groups in all).
    public func meanLoss(_ sequences: [[Int]], batch: Int, progress: (Int, Int, Double) -> Void = { _, _, _ in }) throws -> Double {
        let wasTraining = training
        training = false
        defer { training = wasTraining }
        let groups = Dictionary(grouping: sequences, by: \.count).sorted { $0.key > $1.key }.flatMap { _, group in
            stride(from: 0, to: group.count, by: max(1, batch)).map { Array(group[$0..<min(group.count, $0 + max(1, batch))]) }
        }
        var (total, count) = (0.0, 0)
        for (index, group) in groups.enumerated() {
            let (loss, predictions) = try loss(group)
            total += Double(loss) * Double(predictions)
            count += predictions
            progress(index + 1, groups.count, total / Double(count))
        }
        return total / Double(max(count, 1))
    }

    // MARK: - Adapters

    /// The adapters, by module name.
    public var loraLayers: [(name: String, layer: LoRALinear)] { linearModules.compactMap { m in m.lora.map { (m.name, $0) } } }

    /// Puts a fresh adapter (A initialized as PEFT does, B = 0) on every module `config` selects.
    public func applyLoRA(_ config: LoRAConfig, seed: UInt64 = 0) throws {
        guard loraConfig == nil, adapterSlots.isEmpty else { throw LoRAConfigError("this model already has adapters") }
        guard !isFullTraining else { throw LoRAConfigError("this model is set up for full fine-tuning; adapters do not mix with it") }
        for module in try PEFTAdapter.apply(config, to: linearModules, seed: seed) { module.lora?.training = training }
        loraConfig = config
    }

    /// Puts the PEFT adapter in `folder` on this model.
    public func loadAdapter(folder: String) throws {
        guard loraConfig == nil, adapterSlots.isEmpty else { throw LoRAConfigError("this model already has adapters") }
        guard !isFullTraining else { throw LoRAConfigError("this model is set up for full fine-tuning; adapters do not mix with it") }
        loraConfig = try PEFTAdapter.load(folder: folder, into: linearModules)
        for (_, layer) in loraLayers { layer.training = training }
    }

    /// Writes this model's adapters as a PEFT folder.
    public func saveAdapter(folder: String) throws {
        guard let loraConfig else { throw LoRAError.invalidState("\(modelType): no adapter to save") }
        try PEFTAdapter.save(loraConfig, modules: linearModules, folder: folder)
    }

    /// Folds every adapter into its base weight; forward then gives the same logits with one GEMM per layer.
    public func mergeAdapters() throws { for (_, layer) in loraLayers where !layer.isMerged { try layer.merge() } }

    /// Takes every adapter back out of its base weight.
    public func unmergeAdapters() throws { for (_, layer) in loraLayers where layer.isMerged { try layer.unmerge() } }

    // MARK: - Training

    /// The tensors training updates: the adapters' A and B (PEFT's names), or in full fine-tuning every weight
    /// (transformers' names).
    public var trainableParameters: [TrainableParameter] {
        if isFullTraining { return fullTrainingParameters }
        return loraLayers.flatMap { name, layer in
            [TrainableParameter(name: PEFTAdapter.key(module: name, "lora_A.weight"), value: layer.loraA, gradient: layer.gradA),
             TrainableParameter(name: PEFTAdapter.key(module: name, "lora_B.weight"), value: layer.loraB, gradient: layer.gradB)]
        }
    }

    /// Sets every trainable gradient to zero.
    public func zeroGradients() throws {
        for p in trainableParameters { try backend.fill(p.gradient, with: 0) }
    }

    /// Elements in the model's own weights (adapters excluded; a tied output layer counted once; a 4-bit weight
    /// by its logical size).
    public var baseParameterCount: Int {
        namedWeights.reduce(0) { $0 + $1.tensor.count } + quantizedModules.reduce(0) { $0 + $1.nf4!.weight.count }
    }

    /// Bytes the model's weights take on the device, each in its own dtype (a bf16 checkpoint kept in bf16 takes
    /// half of f32; a 4-bit weight its packed codes and statistics).
    public var weightBytes: Int {
        namedWeights.reduce(0) { $0 + $1.tensor.byteCount } + quantizedModules.reduce(0) { $0 + $1.nf4!.weight.byteCount }
    }

    /// Sets training mode on the model's adapters (models call this from their `training` observer).
    public func propagateTraining() { for (_, layer) in loraLayers { layer.training = training } }
}
