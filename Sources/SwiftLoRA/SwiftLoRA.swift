// SwiftLoRA: the umbrella module. `import SwiftLoRA` brings in tensors and backends (LoRARuntime), the OpenCL
// backend (LoRAOpenCL), the layers (LoRANN), the file formats (LoRAFormats), the tokenizers (LoRATokenizers), chat
// templates (LoRATemplates), training data (LoRAData), adapters (LoRAAdapters), the model interface (LoRAModels),
// the model families (LoRAGPT2, LoRALlama), training (LoRATraining) and QLoRA's 4-bit formats (LoRAQuantization);
// and it chooses the device (DeviceSelection.swift) and knows every model family.
@_exported import LoRAAdapters
@_exported import LoRAData
@_exported import LoRAFormats
@_exported import LoRAGPT2
@_exported import LoRALlama
@_exported import LoRAMPI
@_exported import LoRAModels
@_exported import LoRANN
@_exported import LoRAOpenCL
@_exported import LoRAQuantization
@_exported import LoRARuntime
@_exported import LoRATemplates
@_exported import LoRATokenizers
@_exported import LoRATraining

extension ModelRegistry {
    /// Every family this package implements.
    public static var standard: ModelRegistry { ModelRegistry([GPT2Family.self, LlamaFamily.self]) }
}
