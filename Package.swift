// swift-tools-version: 6.0
// swift-lora: a LoRA fine-tuning backend. Tensors, a CPU backend and an OpenCL backend (loaded at run time),
// LoRA layers, and the `lora` command-line tool. No unsafe build flags: the package must stay usable as a
// versioned dependency.
import PackageDescription

let package = Package(
    name: "swift-lora",
    products: [
        // MARK: - Public API
        .library(name: "SwiftLoRA", targets: ["SwiftLoRA"]),
        .library(name: "LoRARuntime", targets: ["LoRARuntime"]),
        .library(name: "LoRAOpenCL", targets: ["LoRAOpenCL"]),
        .library(name: "LoRANN", targets: ["LoRANN"]),
        .executable(name: "lora", targets: ["lora"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // MARK: - Modules
        // Tensor, Backend protocol, CPU backend.
        .target(name: "LoRARuntime"),
        // OpenCL backend; kernels from the top-level Kernels/ folder are embedded by the EmbedKernels plugin.
        .target(name: "LoRAOpenCL", dependencies: ["LoRARuntime"], plugins: ["EmbedKernels"]),
        // Layers: LoRALinear.
        .target(name: "LoRANN", dependencies: ["LoRARuntime"]),
        // Umbrella: re-exports the modules above and chooses the device.
        .target(name: "SwiftLoRA", dependencies: ["LoRARuntime", "LoRAOpenCL", "LoRANN"]),
        .executableTarget(
            name: "lora",
            dependencies: ["SwiftLoRA", .product(name: "ArgumentParser", package: "swift-argument-parser")]),

        // MARK: - Build tooling
        .executableTarget(name: "KernelEmbedder"),
        .plugin(name: "EmbedKernels", capability: .buildTool(), dependencies: ["KernelEmbedder"]),

        // MARK: - Tests
        .target(name: "LoRATestSupport", dependencies: ["SwiftLoRA"], path: "Tests/LoRATestSupport"),
        .testTarget(name: "LoRARuntimeTests", dependencies: ["LoRARuntime", "LoRATestSupport"]),
        .testTarget(name: "LoRAOpenCLTests", dependencies: ["SwiftLoRA", "LoRATestSupport"]),
        .testTarget(name: "LoRANNTests", dependencies: ["SwiftLoRA", "LoRATestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)
