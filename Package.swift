// swift-tools-version: 6.0
// swift-lora: a LoRA fine-tuning backend. Tensors, a CPU backend and an OpenCL backend (loaded at run time),
// LoRA layers, and the `lora` command-line tool.
import PackageDescription

// The CPU path is fast only when compiled for the CPU it runs on (vector width, FMA): `-target-cpu native`.
// That is an unsafe flag, and a package whose products carry one cannot be used as a versioned dependency.
// So it is applied only when this package is the one being built (a clone, a path dependency), never when
// it is resolved as a versioned or branch dependency: those are loaded from a `checkouts` or `registry` folder
// (or, while resolving, from a repository view rooted at `/`). Without it the code still never calls libm
// `fmaf` (see SIMDMath.swift); a downstream tool gets the fast path with
// `swift build -c release -Xswiftc -target-cpu -Xswiftc native -Xswiftc -DLORA_FMA`.
// LORA_TARGET_CPU=portable (or a CPU name such as haswell) overrides the choice here.
let isDependency = Context.packageDirectory == "/" || Context.packageDirectory.contains("/checkouts/")
    || Context.packageDirectory.contains("/registry/")
let targetCPU = Context.environment["LORA_TARGET_CPU"] ?? (isDependency ? "portable" : "native")
let cpuSettings: [SwiftSetting] = targetCPU == "portable" ? [] : [
    .unsafeFlags(["-target-cpu", targetCPU]),
    .define("LORA_FMA"),
]

let package = Package(
    name: "swift-lora",
    products: [
        // MARK: - Public API
        .library(name: "SwiftLoRA", targets: ["SwiftLoRA"]),
        .library(name: "LoRARuntime", targets: ["LoRARuntime"]),
        .library(name: "LoRAOpenCL", targets: ["LoRAOpenCL"]),
        .library(name: "LoRANN", targets: ["LoRANN"]),
        .library(name: "LoRAFormats", targets: ["LoRAFormats"]),
        .library(name: "LoRAAdapters", targets: ["LoRAAdapters"]),
        .library(name: "LoRAModels", targets: ["LoRAModels"]),
        .library(name: "LoRAGPT2", targets: ["LoRAGPT2"]),
        .library(name: "LoRATokenizers", targets: ["LoRATokenizers"]),
        .library(name: "LoRATemplates", targets: ["LoRATemplates"]),
        .library(name: "LoRALlama", targets: ["LoRALlama"]),
        .library(name: "LoRATraining", targets: ["LoRATraining"]),
        .library(name: "LoRAQuantization", targets: ["LoRAQuantization"]),
        .library(name: "LoRAData", targets: ["LoRAData"]),
        .library(name: "LoRAMPI", targets: ["LoRAMPI"]),
        .executable(name: "lora", targets: ["lora"]),
        // The OpenAI-compatible server for many adapters; its own product so that `lora` builds without the HTTP stack.
        .executable(name: "lora-serve", targets: ["lora-serve"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // HTTP for `lora-serve` only (SwiftNIO underneath; graceful shutdown through swift-service-lifecycle).
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.0.0"),
        // Already in Hummingbird's graph; named here because the server uses their types (graceful shutdown, logs).
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.0.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.5.0"),
    ],
    targets: [
        // MARK: - Modules
        // Tensor, Backend protocol, CPU backend.
        .target(name: "LoRARuntime", swiftSettings: cpuSettings),
        // OpenCL backend; kernels from the top-level Kernels/ folder are embedded by the EmbedKernels plugin.
        .target(name: "LoRAOpenCL", dependencies: ["LoRARuntime", "LoRAFormats"], plugins: ["EmbedKernels"]),
        // Layers: frozen linears (dense, NF4), LoRALinear over any of them, named linear modules.
        .target(name: "LoRANN", dependencies: ["LoRARuntime"]),
        // Files: safetensors, JSON values, atomic writes (no device code).
        .target(name: "LoRAFormats"),
        // Tokenizers: GPT-2's vocab.json + merges.txt, Hugging Face tokenizer.json (BPE).
        .target(name: "LoRATokenizers", dependencies: ["LoRAFormats"]),
        // Chat templates: a Jinja interpreter for the subset Hugging Face chat templates use, rendering as transformers does.
        .target(name: "LoRATemplates", dependencies: ["LoRAFormats"]),
        // Training data: JSONL text, prompt/completion and chat examples to input ids and loss labels, as HF computes them.
        .target(name: "LoRAData", dependencies: ["LoRAFormats", "LoRATokenizers", "LoRATemplates"]),
        // PEFT adapters: LoraConfig, target matching, adapter folders read into and written from linear modules.
        .target(name: "LoRAAdapters", dependencies: ["LoRARuntime", "LoRANN", "LoRAFormats"]),
        // The model interface (forward, backward, loss, adapters, KV cache, generation) and the registry by model_type.
        .target(name: "LoRAModels", dependencies: ["LoRARuntime", "LoRANN", "LoRAFormats", "LoRAAdapters", "LoRAQuantization"]),
        // GPT-2: config, Hugging Face folders, forward and backward.
        .target(name: "LoRAGPT2", dependencies: ["LoRARuntime", "LoRANN", "LoRAFormats", "LoRAAdapters", "LoRAModels", "LoRAQuantization"]),
        // The Llama family (Llama, Mistral, Qwen2, Qwen3): config.json, RoPE tables, forward and backward.
        .target(name: "LoRALlama", dependencies: ["LoRARuntime", "LoRANN", "LoRAFormats", "LoRAAdapters", "LoRAModels", "LoRAQuantization"]),
        // Training: the trainer, optimizers, schedules, data, checkpoints, the loss plot.
        .target(name: "LoRATraining", dependencies: ["LoRARuntime", "LoRANN", "LoRAFormats", "LoRAAdapters", "LoRAModels"]),
        // MPI loaded at run time (Open MPI's and MPICH's ABIs), the launcher's environment, the collectives training uses.
        .target(name: "LoRAMPI"),
        // QLoRA's formats: NF4 quantization bit-exact with bitsandbytes, double quantization, its safetensors tensors
        // and config.json's quantization_config.
        .target(name: "LoRAQuantization", dependencies: ["LoRARuntime", "LoRAFormats"], swiftSettings: cpuSettings),
        // Umbrella: re-exports the modules above, chooses the device and knows every model family.
        .target(name: "SwiftLoRA", dependencies: ["LoRARuntime", "LoRAOpenCL", "LoRANN", "LoRAFormats", "LoRATokenizers",
                                                  "LoRATemplates", "LoRAData", "LoRAAdapters", "LoRAModels", "LoRAGPT2", "LoRALlama",
                                                  "LoRATraining", "LoRAQuantization", "LoRAMPI"]),
        // `lora selftest`: every op and kernel on an OpenCL device against the CPU backend, and short training runs.
        .target(name: "LoRASelftest", dependencies: ["SwiftLoRA"]),
        // Flags both executables share (--device, --dtype, --quantize) and loading a model folder by its family.
        .target(name: "LoRACommandLine", dependencies: ["SwiftLoRA", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        .executableTarget(
            name: "lora",
            dependencies: ["SwiftLoRA", "LoRASelftest", "LoRACommandLine", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        // The server: the engine thread that owns the model (continuous batching over adapters), OpenAI's JSON
        // bodies, the routes; `lora-serve` parses the flags and runs it until SIGTERM or SIGINT.
        .target(name: "LoRAServer", dependencies: [
            "SwiftLoRA", .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "UnixSignals", package: "swift-service-lifecycle"), .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(
            name: "lora-serve",
            dependencies: ["LoRAServer", "LoRACommandLine", .product(name: "ArgumentParser", package: "swift-argument-parser")]),

        // MARK: - Build tooling
        .executableTarget(name: "KernelEmbedder"),
        .plugin(name: "EmbedKernels", capability: .buildTool(), dependencies: ["KernelEmbedder"]),

        // MARK: - Tests
        .target(name: "LoRATestSupport", dependencies: ["SwiftLoRA"], path: "Tests/LoRATestSupport"),
        .testTarget(name: "LoRARuntimeTests", dependencies: ["LoRARuntime", "LoRATestSupport"]),
        .testTarget(name: "LoRAOpenCLTests", dependencies: ["SwiftLoRA", "LoRATestSupport"]),
        .testTarget(name: "LoRANNTests", dependencies: ["SwiftLoRA", "LoRATestSupport"]),
        .testTarget(name: "LoRAFormatsTests", dependencies: ["LoRAFormats", "LoRATestSupport"]),
        .testTarget(name: "LoRAGPT2Tests", dependencies: ["SwiftLoRA", "LoRATestSupport"], exclude: []),
        .testTarget(name: "LoRALlamaTests", dependencies: ["SwiftLoRA", "LoRATestSupport"]),
        .testTarget(name: "LoRATokenizersTests", dependencies: ["LoRATokenizers", "LoRAFormats"]),
        .testTarget(name: "LoRATemplatesTests", dependencies: ["LoRATemplates"]),
        .testTarget(name: "LoRAQuantizationTests", dependencies: ["LoRAQuantization", "LoRARuntime", "LoRAFormats"]),
        .testTarget(name: "LoRADataTests", dependencies: ["SwiftLoRA", "LoRATestSupport"]),
        .testTarget(name: "LoRASelftestTests", dependencies: ["LoRASelftest", "LoRATestSupport"]),
        .testTarget(name: "LoRAServerTests", dependencies: ["LoRAServer", "LoRATestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)
