// SwiftLoRA: the umbrella module. `import SwiftLoRA` brings in tensors and backends (LoRARuntime), the OpenCL
// backend (LoRAOpenCL), the layers (LoRANN) and the file formats (LoRAFormats), the tokenizers
// (LoRATokenizers).
@_exported import LoRAFormats
@_exported import LoRAGPT2
@_exported import LoRANN
@_exported import LoRAOpenCL
@_exported import LoRARuntime
@_exported import LoRATokenizers
