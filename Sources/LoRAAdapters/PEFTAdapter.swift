// PEFT adapter folders: adapter_config.json + adapter_model.safetensors, with PEFT's key names
// (`base_model.model.<module>.lora_A.weight` [r, in], `lora_B.weight` [out, r]), read into and written from a
// model's `LinearModule`s whatever the model. Settings this project does not implement (DoRA, bias training,
// modules_to_save, per-module ranks, ...) are refused by field name.
import Foundation
import LoRAFormats
import LoRANN
import LoRARuntime

/// Reading, applying and writing PEFT LoRA adapters.
public enum PEFTAdapter {
    /// The key prefix PEFT gives a causal LM's modules.
    static let keyPrefix = "base_model.model."

    /// PEFT's key of one of a module's tensors: `base_model.model.<module>.<tensor>` (tensor: `lora_A.weight`, ...).
    public static func key(module: String, _ tensor: String) -> String { keyPrefix + module + "." + tensor }

    /// Reads `folder/adapter_config.json`.
    public static func readConfig(folder: String) throws -> LoRAConfig {
        let path = folder + "/adapter_config.json"
        return try config(from: JSONValue.readObject(path: path), path: path)
    }

    static func config(from root: [String: JSONValue], path: String) throws -> LoRAConfig {
        func invalid(_ reason: String) -> FormatError { .invalid(path: path, reason: reason) }
        func unsupported(_ reason: String) -> FormatError { .unsupported(path: path, reason: reason) }
        guard root["peft_type"]?.stringValue == "LORA" else {
            throw unsupported("peft_type \(root["peft_type"].map { $0.serialized() } ?? "(missing)"): only LORA adapters are supported")
        }
        // Fields that change the math in ways not implemented here: refused unless at their no-op value.
        let inactive: [String: (JSONValue) -> Bool] = [
            "use_dora": { $0 == .bool(false) || $0 == .null },
            "lora_bias": { $0 == .bool(false) || $0 == .null },
            "bias": { $0 == .string("none") || $0 == .null },
            "modules_to_save": { $0 == .null || $0 == .array([]) },
            "rank_pattern": { $0 == .null || $0 == .object([:]) },
            "alpha_pattern": { $0 == .null || $0 == .object([:]) },
            "layers_to_transform": { $0 == .null },
            "layer_replication": { $0 == .null },
            "exclude_modules": { $0 == .null || $0 == .array([]) },
            "target_parameters": { $0 == .null || $0 == .array([]) },
            "trainable_token_indices": { $0 == .null },
            "use_qalora": { $0 == .bool(false) || $0 == .null },
            "alora_invocation_tokens": { $0 == .null },
        ]
        for (field, isInactive) in inactive.sorted(by: { $0.key < $1.key }) {
            if let value = root[field], !isInactive(value) { throw unsupported("\(field) = \(value.serialized()) is not supported") }
        }
        if let task = root["task_type"], task != .null, task != .string("CAUSAL_LM") {
            throw unsupported("task_type \(task.serialized()) (supported: CAUSAL_LM)")
        }
        guard let rank = root["r"]?.intValue, rank >= 1 else { throw invalid("r must be a positive integer") }
        guard let alpha = root["lora_alpha"]?.doubleValue, alpha.isFinite else { throw invalid("lora_alpha must be a number") }
        let targets: LoRAConfig.Targets
        switch root["target_modules"] {
        case .string("all-linear"): targets = .allLinear
        case .string(let pattern): targets = .pattern(pattern)
        case .array(let items):
            let names = items.compactMap(\.stringValue)
            guard names.count == items.count, !names.isEmpty else { throw invalid("target_modules must be a list of names or a string") }
            targets = .names(names)
        default: throw invalid("target_modules must be a list of names or a string")
        }
        let dropout = root["lora_dropout"]?.doubleValue ?? 0
        guard (0..<1).contains(dropout) else { throw invalid("lora_dropout \(dropout) must lie in [0, 1)") }
        let rslora = root["use_rslora"].map { $0 == .null ? false : $0.boolValue } ?? false
        guard let rslora else { throw invalid("use_rslora must be a boolean") }
        let gaussian: Bool
        switch root["init_lora_weights"] ?? .bool(true) {
        case .bool: gaussian = false
        case .string("gaussian"): gaussian = true
        case let other: throw unsupported("init_lora_weights = \(other.serialized()) (supported: true, false, \"gaussian\")")
        }
        return LoRAConfig(rank: rank, alpha: Float(alpha), targets: targets, dropout: Float(dropout),
                          useRSLoRA: rslora, gaussianInit: gaussian)
    }

    /// adapter_config.json's contents for `config`, with the fields PEFT needs to load it. `fanInFanOut`: the base
    /// weights are `[in, out]` (GPT-2's Conv1D).
    public static func configJSON(_ config: LoRAConfig, fanInFanOut: Bool) -> JSONValue {
        let targets: JSONValue = switch config.targets {
        case .names(let names): .array(names.map { .string($0) })
        case .pattern(let pattern): .string(pattern)
        case .allLinear: .string("all-linear")
        }
        return .object([
            "peft_type": .string("LORA"), "task_type": .string("CAUSAL_LM"), "r": .integer(config.rank),
            "lora_alpha": config.alpha.rounded() == config.alpha ? .integer(Int(config.alpha)) : .number(Double(config.alpha)),
            "target_modules": targets, "lora_dropout": .number(Double(config.dropout)), "fan_in_fan_out": .bool(fanInFanOut),
            "bias": .string("none"), "use_rslora": .bool(config.useRSLoRA), "use_dora": .bool(false),
            "init_lora_weights": config.gaussianInit ? .string("gaussian") : .bool(true), "inference_mode": .bool(true),
            "modules_to_save": .null, "base_model_name_or_path": .null, "rank_pattern": .object([:]), "alpha_pattern": .object([:]),
        ])
    }

    // MARK: - Adapters on a model's modules

    /// Puts a fresh adapter (A initialized as PEFT does, B = 0) on every module `config` selects; module i's
    /// initialization and dropout are seeded by `seed + i`. Throws when nothing matches, listing what could.
    @discardableResult
    public static func apply(_ config: LoRAConfig, to modules: [LinearModule], seed: UInt64 = 0) throws -> [LinearModule] {
        guard config.rank >= 1 else { throw LoRAConfigError("r = \(config.rank) must be at least 1") }
        guard (0..<1).contains(config.dropout) else { throw LoRAConfigError("lora_dropout \(config.dropout) must lie in [0, 1)") }
        if let adapted = modules.first(where: { $0.lora != nil }) { throw LoRAConfigError("\(adapted.name) already has an adapter") }
        let matched = try modules.enumerated().filter { try config.matches($0.element.name) }
        guard !matched.isEmpty else {
            throw LoRAConfigError("target_modules \(describe(config.targets)) match no module of this model (its linear "
                + "modules: \(moduleKinds(modules).joined(separator: ", ")), in every layer)")
        }
        for (index, module) in matched {
            module.lora = try LoRALinear(base: module.base, rank: config.rank, alpha: config.alpha, useRSLoRA: config.useRSLoRA,
                                         initialization: config.gaussianInit ? .gaussian : .kaimingUniform,
                                         dropout: config.dropout, seed: seed &+ UInt64(index))
        }
        return matched.map(\.element)
    }

    /// The module names without their layer prefix (`attn.c_attn`, `self_attn.q_proj`, ...), in first-seen order.
    static func moduleKinds(_ modules: [LinearModule]) -> [String] {
        var seen: [String] = []
        for module in modules {
            let parts = module.name.split(separator: ".")
            let kind = (parts.lastIndex { $0.allSatisfy(\.isNumber) }.map { parts[($0 + 1)...] } ?? parts[...]).joined(separator: ".")
            if !seen.contains(kind) { seen.append(kind) }
        }
        return seen
    }

    static func describe(_ targets: LoRAConfig.Targets) -> String {
        switch targets {
        case .names(let names): names.description
        case .pattern(let pattern): JSONValue.quote(pattern)
        case .allLinear: "\"all-linear\""
        }
    }

    /// Reads the adapter in `folder` onto `modules`: its config selects them, its tensors set A and B. Every
    /// expected key must be present with its shape, and no other key may be. Returns the adapter's config.
    @discardableResult
    public static func load(folder: String, into modules: [LinearModule]) throws -> LoRAConfig {
        let config = try readConfig(folder: folder)
        let file = try AdapterFile(folder: folder)
        for module in try apply(config, to: modules) {
            let layer = module.lora!
            for (suffix, tensor) in [("lora_A.weight", layer.loraA), ("lora_B.weight", layer.loraB)] {
                let values = try file.values(module: module, suffix, shape: tensor.shape, rank: config.rank)
                let backend = tensor.backend
                try backend.copy(backend.upload(values, shape: tensor.shape), to: tensor)
            }
        }
        try file.requireNoOtherKeys()
        return config
    }

    /// One module's adapter tensors as a PEFT folder holds them: A `[r, in]` and B `[out, r]`, row-major.
    public struct ModuleWeights {
        public let module: LinearModule
        public let a: [Float], b: [Float]
    }

    /// Reads the adapter in `folder` for `modules` without putting a layer on any (an adapter bank's input): its
    /// config selects the modules (at least one), each must have A `[r, in]` and B `[out, r]` for its shape, and no
    /// other key may be present. Errors name the file, the key, the module and both shapes.
    public static func readWeights(folder: String, modules: [LinearModule]) throws -> (config: LoRAConfig, weights: [ModuleWeights]) {
        let config = try readConfig(folder: folder)
        let matched = try modules.filter { try config.matches($0.name) }
        guard !matched.isEmpty else {
            throw LoRAConfigError("\(folder): target_modules \(describe(config.targets)) match no module of this model (its "
                + "linear modules: \(moduleKinds(modules).joined(separator: ", ")), in every layer)")
        }
        let file = try AdapterFile(folder: folder)
        let weights = try matched.map { module in
            ModuleWeights(module: module,
                          a: try file.values(module: module, "lora_A.weight", shape: [config.rank, module.inFeatures], rank: config.rank),
                          b: try file.values(module: module, "lora_B.weight", shape: [module.outFeatures, config.rank], rank: config.rank))
        }
        try file.requireNoOtherKeys()
        return (config, weights)
    }

    /// adapter_model.safetensors, read key by key with every key checked and the keys read remembered.
    private final class AdapterFile {
        let path: String
        let file: SafeTensorsFile
        var expected = Set<String>()

        init(folder: String) throws {
            path = folder + "/adapter_model.safetensors"
            file = try SafeTensorsFile(path: path)
        }

        /// The values of `module`'s tensor `suffix`, which must have `shape`.
        func values(module: LinearModule, _ suffix: String, shape: [Int], rank: Int) throws -> [Float] {
            let key = PEFTAdapter.key(module: module.name, suffix)
            expected.insert(key)
            guard let entry = file.entries[key] else { throw FormatError.invalid(path: path, reason: "missing '\(key)'") }
            guard entry.shape == shape else {
                throw FormatError.invalid(path: path, reason: "'\(key)' is \(entry.shape), but r = \(rank) on \(module.name) "
                    + "(in \(module.inFeatures), out \(module.outFeatures)) needs \(shape)")
            }
            return try file.floats(key)
        }

        func requireNoOtherKeys() throws {
            if let extra = file.entries.keys.sorted().first(where: { !expected.contains($0) }) {
                throw FormatError.invalid(path: path, reason: "'\(extra)' belongs to no module the adapter's target_modules select")
            }
        }
    }

    /// Writes the adapters on `modules` as a PEFT folder (each file through a temporary name and a rename).
    public static func save(_ config: LoRAConfig, modules: [LinearModule], folder: String) throws {
        let adapted = modules.filter { $0.lora != nil }
        guard !adapted.isEmpty else { throw LoRAError.invalidState("no adapter to save") }
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        var items: [SafeTensorsWriter.Item] = []
        for module in adapted {
            for (suffix, tensor) in [("lora_A.weight", module.lora!.loraA), ("lora_B.weight", module.lora!.loraB)] {
                items.append(.float32(key(module: module.name, suffix), shape: tensor.shape, values: try tensor.toArray()))
            }
        }
        let fanInFanOut = adapted.contains { $0.dense?.layout == .inOut }
        try SafeTensorsWriter.write(items, metadata: ["format": "pt"], to: folder + "/adapter_model.safetensors")
        try AtomicFile.write(Data((configJSON(config, fanInFanOut: fanInFanOut).serialized() + "\n").utf8),
                             to: folder + "/adapter_config.json")
    }
}
