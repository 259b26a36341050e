// SwiftLoRA: the umbrella module. `import SwiftLoRA` brings in tensors and backends (LoRARuntime), the OpenCL
// backend (LoRAOpenCL) and the layers (LoRANN).
@_exported import LoRANN
@_exported import LoRAOpenCL
@_exported import LoRARuntime
