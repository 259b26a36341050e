// The `lora` command-line tool.
import ArgumentParser
import Foundation
// --device, --dtype and --quantize, shared with lora-serve; exported so every command's file sees them.
@_exported import LoRACommandLine
import SwiftLoRA

@main
struct Lora: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lora",
        abstract: "LoRA fine-tuning on OpenCL GPUs, with a pure-Swift CPU fallback.",
        discussion: """
            Device choice: --device or LORA_DEVICE (cpu, opencl, opencl:N, auto). auto takes the first OpenCL GPU,
            else the CPU. Other variables: LORA_KERNELS_DIR, LORA_GEMM, LORA_CLBLAST, LORA_OPENCL_LIBRARY.
            """,
        subcommands: [TrainCommand.self, GenerateCommand.self, EvalCommand.self, MergeCommand.self, QuantizeCommand.self,
                      TokenizeCommand.self, DataCommand.self, BenchCommand.self, DevicesCommand.self, SelftestCommand.self, TuneCommand.self, DemoCommand.self],
        defaultSubcommand: TrainCommand.self)
}
