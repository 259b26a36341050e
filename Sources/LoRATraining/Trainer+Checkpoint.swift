// Checkpoints: adapter (or full) weights, optimizer moments, step, data position and dropout seeds in one
// safetensors file, written through a temporary name and a rename so a kill at any moment leaves a good one.
// Paged AdamW's host-resident moments are read and written like any tensor: the format is AdamW's.
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
            "trains": trainedWhat,
        ], to: path)
    }

    /// What this run trains, as a checkpoint records it: "full", or the adapter's config.
    var trainedWhat: String { model.loraConfig.map { PEFTAdapter.configJSON($0, fanInFanOut: false).serialized() } ?? "full" }

    /// Restores a checkpoint written by `saveCheckpoint` for the same adapter settings.
    public func loadCheckpoint(from path: String) throws {
        let file = try SafeTensorsFile(path: path)
        func invalid(_ reason: String) -> FormatError { .invalid(path: path, reason: reason) }
        guard file.metadata["trains"] == trainedWhat else {
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

