// lora selftest's library: the whole selftest passes on the test OpenCL device (PoCL in CI), a deliberately broken
// kernel is reported as a failure of its check (and only its), a kernel nothing launches fails the coverage check,
// and the comparison itself fails wrong, NaN and missing values.
import Foundation
@testable import LoRASelftest
import LoRATestSupport
import SwiftLoRA
import Testing

/// The repository's Kernels/ folder.
private let kernelsFolder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("Kernels")

/// A fresh backend on the test device (the selftest counts the kernels its backend created), optionally loading
/// kernels from `kernelsDirectory`.
private func freshDevice(kernelsDirectory: String? = nil) throws -> OpenCLBackend {
    try OpenCLBackend(index: try TestDevices.openCL.get().device.index, kernelsDirectory: kernelsDirectory)
}

/// A copy of Kernels/ in a temporary folder with `edits` (file name → (text to replace, replacement)) applied.
private func editedKernels(_ edits: [String: (String, String)], extraFiles: [String: String] = [:]) throws -> URL {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lora-selftest-kernels-\(UUID().uuidString)")
    try FileManager.default.copyItem(at: kernelsFolder, to: dir)
    for (file, (old, new)) in edits {
        let url = dir.appendingPathComponent(file)
        let text = try String(contentsOf: url, encoding: .utf8)
        guard text.contains(old) else { throw LoRAError.invalidArgument("\(file) no longer contains \(old)") }
        try text.replacingOccurrences(of: old, with: new).write(to: url, atomically: true, encoding: .utf8)
    }
    for (file, text) in extraFiles { try text.write(to: dir.appendingPathComponent(file), atomically: true, encoding: .utf8) }
    return dir
}

@Suite("OpenCL selftest", .enabled(if: TestDevices.runOpenCL, "\(TestDevices.skipReason)"))
struct OpenCLSelftestTests {
    @Test("OpenCL selftest: every check passes on the test device, and every kernel in Kernels/ ran")
    func everyCheckPasses() throws {
        let results = Selftest(device: try freshDevice()).run()
        #expect(results.map(\.op) == Selftest.checkNames)
        for result in results where !result.pass { Issue.record("\(result.line)") }
        #expect(results.last?.op == "kernels" && results.last?.pass == true)
        // Every check compared something (or says why it could not run here: CLBlast missing).
        #expect(results.allSatisfy { $0.comparisons > 0 || $0.skipped })
    }

    @Test("OpenCL selftest reports a deliberately broken kernel as a failure of its own check")
    func brokenKernelsFail() throws {
        // Two bugs: the ragged-tile store of the GEMM kernel drops the bias (an edge case: whole tiles are right), and
        // GELU's cubic coefficient is off by 0.2% (a small numeric error).
        let dir = try editedKernels([
            "matmul.cl": ("(hasBias ? bias[j0 + j] : 0.0f)", "0.0f"),
            "activation.cl": ("#define CUBIC 0.044715f", "#define CUBIC 0.0448f"),
        ])
        defer { try? FileManager.default.removeItem(at: dir) }
        let results = Selftest(device: try freshDevice(kernelsDirectory: dir.path))
            .run(include: { ["gemm.kernel.bias", "gemm.kernel.NN", "gelu", "swiglu"].contains($0) })
        let byName = Dictionary(uniqueKeysWithValues: results.map { ($0.op, $0) })
        #expect(byName["gemm.kernel.bias"]?.pass == false, "\(byName["gemm.kernel.bias"]?.line ?? "missing")")
        #expect(byName["gelu"]?.pass == false, "\(byName["gelu"]?.line ?? "missing")")
        #expect(byName["gelu"].map { $0.maxRelError > $0.tolerance && $0.maxRelError.isFinite } == true)
        // The checks the bugs do not touch still pass: a failure points at its kernel.
        #expect(byName["gemm.kernel.NN"]?.pass == true, "\(byName["gemm.kernel.NN"]?.line ?? "missing")")
        #expect(byName["swiglu"]?.pass == true, "\(byName["swiglu"]?.line ?? "missing")")
        #expect(byName["gelu"]?.json.contains(#""pass": false"#) == true)
    }

    @Test("OpenCL selftest turns a check that throws into a failure")
    func thrownErrorFails() throws {
        let thrown = Selftest(device: try freshDevice()).run(Check(name: "throws") { _ in throw LoRAError.invalidArgument("boom") })
        #expect(!thrown.pass && thrown.detail.contains("boom") && thrown.json.contains(#""max_rel_error": null"#))
    }

    @Test("OpenCL selftest fails the kernel coverage check, naming it, when a kernel never runs")
    func uncoveredKernelFails() throws {
        let dir = try editedKernels([:], extraFiles: ["extra.cl": """
            // A new kernel file nobody launches yet.
            __kernel __attribute__((reqd_work_group_size(64, 1, 1)))
            void scale_rows(__global float* x, const float factor) { x[get_global_id(0)] *= factor; }
            """])
        defer { try? FileManager.default.removeItem(at: dir) }
        let selftest = Selftest(device: try freshDevice(kernelsDirectory: dir.path))
        selftest.run(include: { $0 == "gelu" })
        let coverage = selftest.kernelCoverage()
        #expect(!coverage.pass)
        #expect(coverage.detail.contains("extra/scale_rows"))
        #expect(coverage.detail.contains("activation/gelu_backward") == false)
        #expect(coverage.detail.contains("matmul/gemm"))
    }
}

@Suite("Selftest comparisons")
struct SelftestComparisonTests {
    @Test("a wrong, NaN or missing value fails; equal values and a bounded error pass")
    func comparisons() {
        let reference: [Float] = [1, -2, 0.5, 0]
        #expect(Comparison.exact(reference, reference, label: "same").passed)
        #expect(!Comparison.exact([1, -2, 0.5, 1e-30], reference, label: "a zero that is not").passed)
        #expect(!Comparison.measure([1, -2, .nan, 0], reference, tolerance: 1, label: "NaN").passed)
        #expect(!Comparison.measure([1, -2, 0.5], reference, tolerance: 1, label: "short").passed)
        // Normwise: errors scale by the largest |reference| (2).
        let close = Comparison.measure([1, -2, 0.5 + 1e-6, 0], reference, tolerance: 1e-6, label: "close")
        #expect(close.passed && abs(close.error - 5e-7) < 1e-8)
        #expect(!Comparison.measure([1, -2, 0.5 + 1e-5, 0], reference, tolerance: 1e-6, label: "far").passed)
        // Componentwise: a zero magnitude demands an exact match.
        let m = Comparison.Magnitude.componentwise([1, 2, 0, 1])
        #expect(!Comparison.measure([1, -2, 0.5001, 0], reference, magnitude: m, tolerance: 1, label: "m").passed)
        #expect(Comparison.measure([1 + 1e-7, -2, 0.5, 0], reference, magnitude: m, tolerance: 2e-7, label: "m").passed)
        #expect(Comparison.measure([.nan, .infinity], [.nan, .infinity], tolerance: 0, label: "specials").passed)
        #expect(sumBound(1) > 0 && sumBound(1000) > 999 * sumBound(1))
    }

    @Test("a check that finds a wrong result fails; its JSON line says so")
    func summaries() {
        let good = Comparison(error: 1e-8, tolerance: 1e-7, label: "good")
        let bad = Comparison(error: 1e-3, tolerance: 1e-2, label: "bad but bounded")
        let worse = Comparison(error: 2e-6, tolerance: 1e-7, label: "worse")
        let result = Selftest.summarize("op", [good, bad, worse], seconds: 0.5)
        #expect(!result.pass && result.detail.contains("1 of 3 failed; worst: worse"))
        #expect(result.json.contains(#""op": "op", "max_rel_error": 2e-06, "tolerance": 1e-07, "pass": false"#))
        #expect(Selftest.summarize("op", [good, bad], seconds: 0).pass)
        #expect(!Selftest.summarize("op", [], seconds: 0).pass)
    }

    @Test("kernel functions are found with attributes, across lines, and not in comments")
    func kernelNames() {
        let source = """
            // __kernel void commented(int x)
            /* __kernel void block_commented(int x) */
            __kernel void first(__global float* x) {}
            float helper(float x) { return x; }
            __kernel __attribute__((reqd_work_group_size(WN, WM, 1)))
            void second(const int n) {}
            kernel void third() {}
            """
        #expect(OpenCLBackend.kernelFunctionNames(in: source) == ["first", "second", "third"])
    }
}
