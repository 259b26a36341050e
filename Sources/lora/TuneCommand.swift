// `lora tune`: measures the OpenCL kernels' parameters on a device (LoRAOpenCL's KernelTuner: GEMM tiles, vector width
// and work-groups, the row kernels' work-groups and variant), checking every candidate against the CPU backend, and
// caches the fastest per kernel family for the device and driver (TuningCache: `$XDG_CACHE_HOME/swift-lora/`). Every
// later OpenCL backend on that device builds its kernels with them. One line per family: default → tuned values and times.
import ArgumentParser
import Foundation
import SwiftLoRA

struct TuneCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tune",
        abstract: "Measure the OpenCL kernels' parameters on a device and cache the fastest for it.",
        discussion: """
            Per kernel family (gemm, softmax, layernorm, rmsnorm, cross_entropy; lora on GPUs) a coordinate descent from \
            the defaults over each parameter's values, at GPT-2-small shapes; every candidate's outputs are checked \
            against the CPU backend before it is timed, and a candidate must beat the best so far by 3%. The result \
            goes to $XDG_CACHE_HOME/swift-lora/<hash of device, vendor, driver>.json (else ~/.cache/swift-lora/), \
            which every OpenCL backend on this device then reads (LORA_TUNE_CACHE=off ignores it).
            """)

    @Option(help: "opencl (the first OpenCL GPU, else the first OpenCL device) or opencl:N (default: LORA_DEVICE when it names an OpenCL device, else opencl).")
    var device: String?
    @Flag(help: "One JSON object per kernel family and line on stdout ({kernel, default, tuned, default_seconds, tuned_seconds, speedup, measured, rejected}), then {cache}; progress on stderr.")
    var json = false
    @Option(help: "Seconds to spend measuring, shared out over the kernel families (each family's default is measured even past it).")
    var budget: Double = 60
    @Option(help: "Only these comma-separated kernel families (gemm, softmax, layernorm, rmsnorm, cross_entropy, lora); the others keep their defaults.")
    var kernels: String?
    @Flag(help: "Print each candidate's time on stderr.")
    var verbose = false

    func validate() throws {
        guard budget >= 0, budget.isFinite else { throw ValidationError("--budget \(budget): expected seconds >= 0") }
        if let kernels {
            for family in kernels.split(separator: ",") where !KernelParameter.families.contains(String(family)) {
                throw ValidationError("--kernels: unknown kernel family \(family) (known: \(KernelParameter.families.joined(separator: ", ")))")
            }
        }
    }

    func run() throws {
        let backend = try openCLDevice(device, command: "lora tune", purpose: "measures an OpenCL device")
        let families = kernels.map { $0.split(separator: ",").map(String.init) }
        let tuner = KernelTuner(backend: backend, budget: budget, families: families)
        note("tune: \(backend.name) \(backend.deviceDescription); kernel families \(tuner.familiesToTune.joined(separator: ", ")); "
             + "budget \(Int(budget)) s")
        let report = try tuner.run { line in if verbose { FileHandle.standardError.write(Data((line + "\n").utf8)) } }
        if !json {
            emit(pad("kernel", 14) + pad("default → tuned", 64) + pad("default ms", 12) + pad("tuned ms", 12) + "speedup")
        }
        for result in report.results {
            let family = result.family
            if json {
                let object: [String: Any] = [
                    "kernel": family,
                    "default": values(result.defaults, family), "tuned": values(result.tuned, family),
                    "default_seconds": result.defaultSeconds.isNaN ? NSNull() : result.defaultSeconds,
                    "tuned_seconds": result.tunedSeconds.isNaN ? NSNull() : result.tunedSeconds,
                    "speedup": result.speedup.isNaN ? NSNull() : result.speedup,
                    "measured": result.measured, "rejected": result.rejected,
                    "failure": result.failure.map { $0 as Any } ?? NSNull(),
                ]
                let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
                emit(String(decoding: data, as: UTF8.self))
            } else {
                let change = result.defaults.summary(of: family) + " → "
                    + (result.tuned == result.defaults ? "(default)" : result.tuned.summary(of: family))
                emit(pad(family, 14) + pad(change, 64) + pad(String(format: "%.3f", result.defaultSeconds * 1e3), 12)
                     + pad(String(format: "%.3f", result.tunedSeconds * 1e3), 12) + String(format: "%.2fx", result.speedup)
                     + (result.failure.map { "  FAILED: \($0)" } ?? "")
                     + (result.rejected.isEmpty ? "" : "  (\(result.rejected.count) of \(result.measured) candidates rejected)"))
            }
        }
        // Written after the table, so a cache folder that cannot be written still leaves the measurements.
        let url = try TuningCache.write(report.entry(for: backend), for: backend.device)
        if json {
            let data = try JSONSerialization.data(withJSONObject: ["cache": url.path], options: [.sortedKeys, .withoutEscapingSlashes])
            emit(String(decoding: data, as: UTF8.self))
        } else {
            emit("cache: \(url.path)")
        }
        for result in report.results { for rejection in result.rejected { note("rejected \(result.family) \(rejection)") } }
        if report.results.contains(where: { $0.failure != nil }) { throw ExitCode(1) }
    }

    /// A family's values as {NAME: value}.
    private func values(_ parameters: KernelParameters, _ family: String) -> [String: Int] {
        Dictionary(uniqueKeysWithValues: KernelParameter.all.filter { $0.family == family }
            .map { (String($0.name.dropFirst(family.count + 1)), parameters[$0.name]) })
    }

    private func pad(_ text: String, _ width: Int) -> String {
        text.count >= width ? text + " " : text + String(repeating: " ", count: width - text.count)
    }

    private func note(_ line: String) {
        if json { FileHandle.standardError.write(Data((line + "\n").utf8)) } else { emit(line) }
    }

    /// A line on stdout, flushed at once.
    private func emit(_ line: String) {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }
}
