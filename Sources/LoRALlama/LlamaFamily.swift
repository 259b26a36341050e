// The Llama family in the model registry: `model_type` llama, mistral, qwen2, qwen3.
import LoRAModels
import LoRARuntime

/// Loads Llama-family folders for the registry.
public enum LlamaFamily: ModelFamily {
    public static let modelTypes = ["llama", "mistral", "qwen2", "qwen3"]

    public static func load(folder: String, backend: any Backend, options: ModelLoadOptions) throws -> any LanguageModel {
        try LlamaModel(folder: folder, backend: backend, options: options)
    }

    public static func random(folder: String, seed: UInt64, backend: any Backend) throws -> any LanguageModel {
        try LlamaModel(config: LlamaConfig(contentsOf: folder + "/config.json"), seed: seed, backend: backend)
    }
}
