// Serving many adapters at once (the LoRA paper's limitation lifted): PEFT adapters loaded unmerged into numbered
// slots, each target module holding a bank (LoRANN's AdapterBank) of the slots that target it, and a forward in
// which every sequence of the batch picks its own slot (-1: the base model). Slot a is the same adapter in every
// module; an adapter that does not target a module has rank 0 there. Unloading frees the slot for the next load.
// Inference only: the banks have no gradients, and they do not mix with a model's one trainable adapter.
import LoRAAdapters
import LoRAFormats
import LoRANN
import LoRARuntime

/// The adapters a model serves, by slot.
public final class AdapterSlots {
    /// One loaded adapter.
    public struct Adapter: Sendable {
        public let name: String
        public let slot: Int
        public let config: LoRAConfig
        /// The PEFT folder it was read from.
        public let folder: String
        /// The modules it targets (PEFT's names).
        public let modules: [String]
    }

    /// How many adapters may be loaded at once (vLLM's `max_loras`); at least the number loaded.
    public var maxAdapters: Int {
        didSet { precondition(maxAdapters >= loaded.count, "maxAdapters \(maxAdapters) is below the \(loaded.count) loaded") }
    }
    /// Index: slot.
    public private(set) var bySlot: [Adapter?] = []

    public init(maxAdapters: Int = 16) {
        precondition(maxAdapters >= 1, "maxAdapters \(maxAdapters) must be ≥ 1")
        self.maxAdapters = maxAdapters
    }

    /// The loaded adapters in slot order.
    public var loaded: [Adapter] { bySlot.compactMap { $0 } }
    public var isEmpty: Bool { loaded.isEmpty }

    /// The slot of the adapter called `name`, if one is loaded.
    public func slot(named name: String) -> Int? { loaded.first { $0.name == name }?.slot }

    /// The adapter in `slot`, if any.
    public func adapter(slot: Int) -> Adapter? { bySlot.indices.contains(slot) ? bySlot[slot] : nil }

    /// The lowest free slot, or nil when `maxAdapters` are loaded.
    var freeSlot: Int? {
        guard loaded.count < maxAdapters else { return nil }
        return bySlot.firstIndex { $0 == nil } ?? bySlot.count
    }

    func insert(_ adapter: Adapter) {
        while bySlot.count <= adapter.slot { bySlot.append(nil) }
        bySlot[adapter.slot] = adapter
    }

    func remove(slot: Int) {
        bySlot[slot] = nil
        while bySlot.last.map({ $0 == nil }) == true { bySlot.removeLast() }
    }
}

/// Why adapters could not be loaded, unloaded or chosen.
public enum AdapterSlotError: Error, CustomStringConvertible, Equatable {
    /// An adapter of this name is loaded already.
    case duplicateName(String, slot: Int)
    /// `maxAdapters` are loaded.
    case tooManyAdapters(limit: Int, loaded: [String])
    /// No adapter of this name is loaded.
    case unknownName(String, loaded: [String])
    /// A row or sequence names a slot that holds no adapter.
    case unknownSlot(Int, loaded: [String])
    /// The model is in a state banks do not mix with (a trainable adapter, full fine-tuning), or a bad argument.
    case invalid(String)

    public var description: String {
        func list(_ names: [String]) -> String { names.isEmpty ? "none" : names.joined(separator: ", ") }
        return switch self {
        case .duplicateName(let name, let slot): "an adapter named '\(name)' is already loaded (slot \(slot)); unload it first"
        case .tooManyAdapters(let limit, let loaded):
            "at most \(limit) adapters may be loaded at once (loaded: \(list(loaded))); unload one or raise the limit"
        case .unknownName(let name, let loaded): "no adapter named '\(name)' is loaded (loaded: \(list(loaded)))"
        case .unknownSlot(let slot, let loaded): "adapter slot \(slot) holds no adapter (loaded: \(list(loaded)))"
        case .invalid(let message): message
        }
    }
}

extension LanguageModel {
    /// The names of the loaded adapters, in slot order.
    public var adapterNames: [String] { adapterSlots.loaded.map(\.name) }

    /// How many adapters may be loaded at once.
    public var maxAdapters: Int {
        get { adapterSlots.maxAdapters }
        set { adapterSlots.maxAdapters = newValue }
    }

    /// Loads the PEFT adapter in `folder` unmerged into the lowest free slot, under `name`, and returns the slot.
    /// Throws (leaving the model as it was) for a name already loaded, `maxAdapters` reached, target modules that
    /// match nothing, tensors whose shapes do not fit the model's modules (naming the key, the module and both
    /// shapes), or a model with a trainable adapter or in full fine-tuning.
    @discardableResult
    public func loadAdapter(name: String, folder: String) throws -> Int {
        guard !name.isEmpty else { throw AdapterSlotError.invalid("an adapter needs a non-empty name") }
        if let slot = adapterSlots.slot(named: name) { throw AdapterSlotError.duplicateName(name, slot: slot) }
        guard loraConfig == nil else {
            throw AdapterSlotError.invalid("\(modelType): this model has a LoRA adapter applied (training or merged); "
                + "serving adapters by slot needs the base model alone")
        }
        guard !isFullTraining else { throw AdapterSlotError.invalid("\(modelType): adapters by slot do not mix with full fine-tuning") }
        guard let slot = adapterSlots.freeSlot else {
            throw AdapterSlotError.tooManyAdapters(limit: adapterSlots.maxAdapters, loaded: adapterNames)
        }
        let (config, weights) = try PEFTAdapter.readWeights(folder: folder, modules: linearModules)
        let scale = LoRALinear.scale(alpha: config.alpha, rank: config.rank, useRSLoRA: config.useRSLoRA)
        do {
            for w in weights {
                let module = w.module
                if module.adapters == nil {
                    module.adapters = try AdapterBank(backend: backend, inFeatures: module.inFeatures, outFeatures: module.outFeatures,
                                                      capacity: slot + 1, maxRank: config.rank)
                }
                try module.adapters!.set(slot: slot, a: w.a, b: w.b, rank: config.rank, scale: scale)
            }
        } catch {
            try? removeFromBanks(slot: slot)
            throw error
        }
        adapterSlots.insert(AdapterSlots.Adapter(name: name, slot: slot, config: config, folder: folder,
                                                 modules: weights.map(\.module.name)))
        return slot
    }

    /// Unloads the adapter called `name`, freeing its slot.
    public func unloadAdapter(name: String) throws {
        guard let slot = adapterSlots.slot(named: name) else { throw AdapterSlotError.unknownName(name, loaded: adapterNames) }
        try removeFromBanks(slot: slot)
        adapterSlots.remove(slot: slot)
    }

    /// Empties `slot` in every bank; a bank left empty is dropped.
    private func removeFromBanks(slot: Int) throws {
        for module in linearModules {
            guard let bank = module.adapters else { continue }
            try bank.clear(slot: slot)
            if bank.isEmpty { module.adapters = nil }
        }
    }

    /// Logits `[B·T, V]` for B equal-length sequences, sequence b with the adapter in slot `adapters[b]` (-1: the base
    /// model alone): row for row what each sequence gives alone with only its adapter applied. With a cache, as
    /// `forward(_:cache:)`. Saves nothing for backward through the adapters (banks serve inference).
    public func forward(_ tokens: [[Int]], cache: KVCache?, adapters: [Int], logits: LogitPositions = .all) throws -> Tensor {
        guard adapters.count == tokens.count else {
            throw AdapterSlotError.invalid("\(modelType): \(adapters.count) adapter slots for \(tokens.count) sequences")
        }
        let (_, length) = try checkTokens(tokens, start: cache?.length ?? 0)
        let rows = try AdapterRows(sequences: adapters.map { Int32(clamping: $0) }, length: length, backend: backend)
        return try withAdapterRows(rows) { try forward(tokens, cache: cache, logits: logits) }
    }

    /// Runs `body` (forwards) with every row choosing its slot as `rows` says: the per-row form of
    /// `forward(_:cache:adapters:)` for a batch laid out some other way. Each named slot must hold an adapter.
    public func withAdapterRows<R>(_ rows: AdapterRows, _ body: () throws -> R) throws -> R {
        for segment in rows.segments where segment.adapter >= 0 && adapterSlots.adapter(slot: segment.adapter) == nil {
            throw AdapterSlotError.unknownSlot(segment.adapter, loaded: adapterNames)
        }
        let banked = linearModules.filter { $0.adapters != nil }
        for module in banked { module.adapterRows = rows }
        defer { for module in banked { module.adapterRows = nil } }
        return try body()
    }
}
