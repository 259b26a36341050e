// `lora merge`: folds a PEFT adapter into its base model (W' = W + s·B·A) and writes a Hugging Face folder of the
// same architecture that transformers loads. The tokenizer files come along.
import ArgumentParser
import Foundation
import SwiftLoRA

struct MergeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge", abstract: "Fold a PEFT LoRA adapter into a model folder.")

    @Option(help: "The base Hugging Face model folder.")
    var model: String
    @Option(help: "The PEFT LoRA adapter folder.")
    var adapter: String
    @Option(help: "The folder to write (config.json, model.safetensors or shards with an index, and the model's tokenizer files), in the base's dtype unless --dtype.")
    var out: String
    @OptionGroup var device: DeviceOptions
    @OptionGroup var load: LoadOptions

    func validate() throws {
        let (source, target) = (URL(fileURLWithPath: model).standardizedFileURL.path, URL(fileURLWithPath: out).standardizedFileURL.path)
        guard source != target else { throw ValidationError("--out must differ from --model: merging in place would overwrite the base") }
    }

    func run() throws {
        let lm = try loadModel(model, backend: try device.select(), options: load.options())
        try lm.loadAdapter(folder: adapter)
        try lm.mergeAdapters()
        try lm.save(folder: out)
        let copied = try copyTokenizerFiles(from: model, to: out)
        print("merged \(lm.loraLayers.count) adapted modules into \(out) (config.json, model.safetensors"
            + (copied.isEmpty ? "" : ", " + copied.joined(separator: ", ")) + ")")
    }
}
