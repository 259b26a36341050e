// `lora selftest`: proves an OpenCL device (a new GPU, a new driver) against the CPU backend with nothing but this
// binary. Every op forward and backward, every kernel in Kernels/ (both GEMM engines, the fused LoRA kernel, both NF4
// GEMM kernels), and a few training steps of tiny models; one line per check (`--json`: one object per line) and a
// non-zero exit status when any check fails. The checks and their error bounds live in LoRASelftest.
import ArgumentParser
import Foundation
import LoRASelftest
import SwiftLoRA

struct SelftestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "selftest",
        abstract: "Check every op and kernel on an OpenCL device against the CPU backend, then a few training steps on both.",
        discussion: """
            Each line is one check: its largest error, measured against the bound the op's arithmetic allows \
            (sums of k terms: 2γ_k of the terms' magnitudes; copies, conversions and masks: exact), and its time. \
            Exits with status 1 when any check fails. On a machine without a GPU, --device opencl runs on any OpenCL \
            device (PoCL on the CPU); without OpenCL at all it stops with an error.
            """)

    @Option(help: "opencl (the first OpenCL GPU, else the first OpenCL device) or opencl:N (default: LORA_DEVICE when it names an OpenCL device, else opencl).")
    var device: String?
    @Flag(help: "One JSON object per check and line on stdout ({op, max_rel_error, tolerance, pass, seconds, comparisons, skipped, detail}); the rest on stderr.")
    var json = false
    @Option(help: "Only the checks whose names contain one of these comma-separated words (e.g. gemm,attention); the kernel coverage check runs only with all of them.")
    var only: String?
    @Flag(help: "List the checks' names and exit.")
    var list = false

    func run() throws {
        if list {
            Selftest.checkNames.forEach { print($0) }
            return
        }
        let backend = try openCLDevice(device, command: "lora selftest", purpose: "checks an OpenCL device against the CPU backend")
        let words = only?.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        if let words, !Selftest.checkNames.contains(where: { name in words.contains { name.contains($0) } }) {
            throw ValidationError("--only \(only!): no check matches (lora selftest --list names them)")
        }
        func note(_ line: String) {
            if json { FileHandle.standardError.write(Data((line + "\n").utf8)) } else { emit(line) }
        }
        note("selftest: \(backend.name) \(backend.deviceDescription) against the CPU backend")
        note("CLBlast: " + (backend.hasCLBlast ? "loaded" : "not loaded (its GEMM checks are skipped)")
             + "; GEMM engine this device picks: \((try? backend.gemmEngineChoice().description) ?? "unknown")")
        let start = DispatchTime.now().uptimeNanoseconds
        let results = Selftest(device: backend).run(include: words.map { words in { name in words.contains { name.contains($0) } } }) {
            emit(json ? $0.json : $0.line)
        }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        let failed = results.filter { !$0.pass }
        let skipped = results.filter(\.skipped).count
        note(String(format: "selftest: %d passed, %d failed, %d skipped on %@ in %.1f s", results.count - failed.count - skipped,
                    failed.count, skipped, backend.name, seconds)
             + (failed.isEmpty ? "" : "; failed: " + failed.map(\.op).joined(separator: ", ")))
        if !failed.isEmpty { throw ExitCode(1) }
    }

    /// A line on stdout, flushed at once (a slow device shows progress; a killed run keeps what it printed).
    private func emit(_ line: String) {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }
}
