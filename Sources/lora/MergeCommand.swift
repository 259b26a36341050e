// `lora merge`: folds a PEFT adapter into its base model and writes a Hugging Face GPT-2 folder that transformers
// loads (W' = W + s·(B·A)ᵀ for GPT-2's Conv1D weights). The tokenizer files come along.
import ArgumentParser
import Foundation
import SwiftLoRA

struct MergeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge", abstract: "Fold a PEFT LoRA adapter into a GPT-2 model folder.")

    @Option(help: "The base Hugging Face GPT-2 folder.")
    var model: String
    @Option(help: "The PEFT LoRA adapter folder.")
    var adapter: String
    @Option(help: "The folder to write (config.json, model.safetensors, and the model's tokenizer files).")
    var out: String
    @OptionGroup var device: DeviceOptions

    func validate() throws {
        let (source, target) = (URL(fileURLWithPath: model).standardizedFileURL.path, URL(fileURLWithPath: out).standardizedFileURL.path)
        guard source != target else { throw ValidationError("--out must differ from --model: merging in place would overwrite the base") }
    }

    func run() throws {
        let gpt2 = try GPT2Model(folder: model, backend: try device.select())
        try gpt2.loadAdapter(folder: adapter)
        try gpt2.mergeAdapters()
        try gpt2.save(folder: out)
        let copied = try copyTokenizerFiles(from: model, to: out)
        print("merged \(gpt2.loraLayers.count) adapted modules into \(out) (config.json, model.safetensors"
            + (copied.isEmpty ? "" : ", " + copied.joined(separator: ", ")) + ")")
    }
}
