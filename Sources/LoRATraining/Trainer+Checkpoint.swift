// Checkpoints: adapter (or full) weights, optimizer moments, step, data position and dropout seeds in one
// safetensors file, written through a temporary name and a rename so a kill at any moment leaves a good one.
// The metadata also records the run's settings (`trains`: the adapter's config; `settings`: the model, the data and
// the caller's flags), and resuming with other values refuses, naming each; a checkpoint from before `settings`
// was recorded still resumes, its adapter settings checked.
// Paged AdamW's host-resident moments are read and written like any tensor: the format is AdamW's.
import Foundation
import LoRAAdapters
import LoRAFormats
import LoRAModels
import LoRARuntime

extension Trainer {
    /// Writes adapter weights, optimizer moments, step, data position and dropout seeds to one safetensors file,
    /// through a temporary name and a rename: a kill at any moment leaves the previous checkpoint or this one.
    public func saveCheckpoint(to path: String) throws {
        var items: [SafeTensorsWriter.Item] = []
        for (index, p) in optimizer.parameters.enumerated() {
            items.append(.float32(p.name, shape: p.value.shape, values: try p.value.toArray()))
            if optimizer.kind.keepsMoments {
                items.append(.float32("optimizer.m." + p.name, shape: p.value.shape, values: try optimizer.moments[index].m.toArray()))
                items.append(.float32("optimizer.v." + p.name, shape: p.value.shape, values: try optimizer.moments[index].v.toArray()))
            }
        }
        let seeds = model.loraLayers.map { String($0.layer.nextDropoutSeed) }.joined(separator: ",")
        try SafeTensorsWriter.write(items, metadata: [
            "step": String(step), "optimizer_step": String(optimizer.step), "epoch": String(data.epoch),
            "index": String(data.index), "dropout_seeds": seeds, "optimizer": optimizer.kind.rawValue,
            "trains": trainedWhat, "settings": JSONValue.object(runSettings.mapValues { .string($0) }).serialized(),
        ], to: path)
    }

    /// The settings a checkpoint records beside `trains`: the caller's `settings`, the model's kind and size, and a
    /// fingerprint of the training tokens (a file edited since would put the data position somewhere else).
    var runSettings: [String: String] {
        settings.merging(["the model": "\(model.modelType) with \(model.baseParameterCount) parameters",
                          "the training tokens": data.fingerprint], uniquingKeysWith: { own, _ in own })
    }

    /// The adapter's settings in `trains` (PEFT's adapter_config.json, or "full"), by the flag that sets each.
    static func adapterSettings(_ trains: String?) -> [String: String] {
        guard let trains else { return [:] }
        guard trains != "full" else { return ["--full": "yes"] }
        guard let object = (try? JSONValue.parse(Data(trains.utf8)))?.objectValue else { return ["adapter": trains] }
        let flags = ["r": "--rank", "lora_alpha": "--alpha", "target_modules": "--targets", "lora_dropout": "--dropout",
                     "use_rslora": "--rslora"]
        var result = ["--full": "no"]
        for (key, value) in object { result[flags[key] ?? "adapter_config.json's \(key)"] = Self.describe(value) }
        return result
    }

    /// A JSON value as a flag would give it: strings unquoted, lists comma-separated.
    static func describe(_ value: JSONValue) -> String {
        if let s = value.stringValue { return s }
        if let list = value.arrayValue { return list.map(describe).joined(separator: ",") }
        if let number = value.doubleValue {  // written from a Float: its shortest form ("0.2", not 0.20000000298023224)
            return number.rounded() == number && abs(number) < 1e15 ? String(Int(number)) : String(Float(number))
        }
        return value.serialized()
    }

    /// The settings of this run that differ from those `file` was written with (settings it does not record, as in
    /// a checkpoint from before they were recorded, are not compared), in flag order.
    func mismatches(with file: SafeTensorsFile) -> [TrainingError.SettingMismatch] {
        var recorded = Self.adapterSettings(file.metadata["trains"]), current = Self.adapterSettings(trainedWhat)
        if let text = file.metadata["settings"], let object = (try? JSONValue.parse(Data(text.utf8)))?.objectValue {
            recorded.merge(object.compactMapValues(\.stringValue), uniquingKeysWith: { adapter, _ in adapter })
            current.merge(runSettings, uniquingKeysWith: { adapter, _ in adapter })
        }
        let order = ["--model", "the model", "--full", "--rank", "--alpha", "--targets", "--dropout", "--rslora",
                     "--data", "--tokens", "the training tokens", "--seq", "--packing", "--batch", "--seed"]
        return current.keys.filter { recorded[$0] != nil && recorded[$0] != current[$0] }
            .sorted { (order.firstIndex(of: $0) ?? order.count, $0) < (order.firstIndex(of: $1) ?? order.count, $1) }
            .map { TrainingError.SettingMismatch(setting: $0, run: current[$0]!, checkpoint: recorded[$0]!) }
    }

    /// What this run trains, as a checkpoint records it: "full", or the adapter's config.
    var trainedWhat: String { model.loraConfig.map { PEFTAdapter.configJSON($0, fanInFanOut: false).serialized() } ?? "full" }

    /// Restores a checkpoint written by `saveCheckpoint` for the same adapter settings.
    public func loadCheckpoint(from path: String) throws {
        let file = try SafeTensorsFile(path: path)
        func invalid(_ reason: String) -> FormatError { .invalid(path: path, reason: reason) }
        let mismatches = mismatches(with: file)
        guard mismatches.isEmpty else { throw TrainingError.checkpointMismatch(path: path, mismatches) }
        guard file.metadata["trains"] == trainedWhat else {  // a field no flag sets: named above too, but be sure
            throw invalid("it was written for other settings (full fine-tuning, or the adapter's rank, alpha, targets, dropout); resume with the same ones")
        }
        // adamw and paged_adamw keep the same moments, so either resumes the other's checkpoint.
        let written = file.metadata["optimizer"].flatMap(Optimizer.Kind.init(rawValue:))
        guard written == optimizer.kind || written?.keepsMoments == true && optimizer.kind.keepsMoments else {
            throw invalid("it was written by \(file.metadata["optimizer"] ?? "?"), not \(optimizer.kind.rawValue)")
        }
        guard let step = file.metadata["step"].flatMap(Int.init), let optimizerStep = file.metadata["optimizer_step"].flatMap(Int.init),
              let epoch = file.metadata["epoch"].flatMap(Int.init), let index = file.metadata["index"].flatMap(Int.init),
              let seeds = file.metadata["dropout_seeds"]?.split(separator: ",").map({ UInt64($0) }),
              seeds.count == model.loraLayers.count, seeds.allSatisfy({ $0 != nil }) else {
            throw invalid("its step, data position or dropout seeds are missing or malformed")
        }
        let backend = model.backend
        for (i, p) in optimizer.parameters.enumerated() {
            var targets = [(p.name, p.value)]
            if optimizer.kind.keepsMoments {
                targets += [("optimizer.m." + p.name, optimizer.moments[i].m), ("optimizer.v." + p.name, optimizer.moments[i].v)]
            }
            for (name, tensor) in targets {
                guard try file.entry(name).shape == tensor.shape else { throw invalid("'\(name)' has another shape than this run's") }
                try backend.copy(backend.upload(try file.floats(name), shape: tensor.shape), to: tensor)
            }
        }
        for ((_, layer), seed) in zip(model.loraLayers, seeds) { layer.nextDropoutSeed = seed! }
        optimizer.restore(step: optimizerStep)
        (self.step, data.epoch, data.index) = (step, epoch, index)
    }
}

