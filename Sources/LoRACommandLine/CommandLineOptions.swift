// Flags shared by the `lora` and `lora-serve` executables: the device (`--device`) and how a model loads (`--dtype`,
// `--quantize`). Its own module so the server's executable reuses them without the `lora` tool's commands.
import ArgumentParser
import Foundation
import SwiftLoRA

/// `--dtype` and `--quantize`, shared by every command that loads a model.
public struct LoadOptions: ParsableArguments {
    @Option(name: .long, help: "Storage of the model's weights on the device: keep (the file's), float32, bfloat16 or float16. Math is float32 either way.")
    public var dtype = "keep"
    @Option(name: .long, help: "nf4: quantize the decoder's linear layers to 4-bit NormalFloat as they load (QLoRA: bitsandbytes' format, blocks of 64, double quantization). A bitsandbytes 4-bit folder loads 4-bit without it.")
    public var quantize: String?

    public init() {}

    public func validate() throws {
        guard dtype == "keep" || DType(rawValue: dtype)?.isFloatingPoint == true else {
            throw ValidationError("--dtype takes keep, float32, bfloat16 or float16, not '\(dtype)'")
        }
        if let quantize, quantize != "nf4" {
            throw ValidationError("--quantize takes nf4, not '\(quantize)' (fp4 and 8-bit are not supported)")
        }
    }

    /// The dtype --dtype names (nil for keep).
    public var storage: DType? { dtype == "keep" ? nil : DType(rawValue: dtype) }

    /// The load options; `defaultDType` applies when --dtype is keep (full fine-tuning trains float32 weights).
    public func options(defaultDType: DType? = nil) -> ModelLoadOptions {
        ModelLoadOptions(dtype: storage ?? defaultDType, quantization: quantize == nil ? nil : NF4Options())
    }
}

/// `--device`, shared by every command that computes.
public struct DeviceOptions: ParsableArguments {
    @Option(name: .long, help: "cpu, opencl, opencl:N or auto (default: LORA_DEVICE, else auto).")
    public var device: String?

    public init() {}

    /// Chooses the device and prints the choice and the reason (to stderr when stdout is for data). `rank`: this
    /// process's rank in a data-parallel job and on its node (the node's ranks spread over its GPUs).
    public func select(announce: Bool = true, rank: (world: Int, local: Int)? = nil) throws -> any Backend {
        let selection = try Devices.select(device, localRank: rank?.local)
        let line = (rank.map { "rank \($0.world): " } ?? "")
            + "device: \(selection.backend.deviceDescription) [\(selection.backend.name)]: \(selection.reason)"
        if announce { print(line) } else { FileHandle.standardError.write(Data((line + "\n").utf8)) }
        return selection.backend
    }
}
