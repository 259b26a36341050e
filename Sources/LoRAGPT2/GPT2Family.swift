// GPT-2 in the model registry: `model_type` gpt2.
import LoRAModels
import LoRARuntime

/// Loads GPT-2 folders for the registry.
public enum GPT2Family: ModelFamily {
    public static let modelTypes = ["gpt2"]

    public static func load(folder: String, backend: any Backend, options: ModelLoadOptions) throws -> any LanguageModel {
        try GPT2Model(folder: folder, backend: backend, options: options)
    }

    public static func random(folder: String, seed: UInt64, backend: any Backend) throws -> any LanguageModel {
        try GPT2Model(config: GPT2Config(contentsOf: folder + "/config.json"), seed: seed, backend: backend)
    }
}
