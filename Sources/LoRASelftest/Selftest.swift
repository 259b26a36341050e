// `lora selftest`'s engine: every op of the Backend protocol, and every kernel in Kernels/ (including the variants a
// device would not pick by default: both GEMM engines, the fused LoRA kernel and the two-GEMM path, both NF4 GEMM
// kernels, both softmax variants), run on an OpenCL device and on the CPU backend at shapes that cross the kernels' tile and work-group
// edges, then a few training steps of tiny random models on both. Each check compares the two as Comparison.swift
// states and yields one result; a check that throws fails with the error. Everything is generated in memory from
// fixed seeds: the binary needs no test harness and no files.
import Foundation
import SwiftLoRA

/// The outcome of one check (one line of `lora selftest`).
public struct SelftestResult: Sendable {
    /// The check's name, e.g. `gemm.kernel.NT` or `train.gpt2-tiny`.
    public let op: String
    /// The worst case's error (see `Comparison`), scaled as its bound is.
    public let maxRelError: Double
    /// The worst case's bound.
    public let tolerance: Double
    public let pass: Bool
    /// Wall time of the check, both devices.
    public let seconds: Double
    /// Comparisons made (cases × outputs).
    public let comparisons: Int
    /// The worst case and where its largest error is; the error a failing check threw; or why it was skipped.
    public let detail: String
    /// Set when the check could not run here and says nothing about the device (CLBlast not installed).
    public let skipped: Bool

    public init(op: String, maxRelError: Double, tolerance: Double, pass: Bool, seconds: Double, comparisons: Int,
                detail: String, skipped: Bool = false) {
        (self.op, self.maxRelError, self.tolerance, self.pass, self.seconds) = (op, maxRelError, tolerance, pass, seconds)
        (self.comparisons, self.detail, self.skipped) = (comparisons, detail, skipped)
    }

    /// One JSON object: op, max_rel_error, tolerance, pass, seconds, comparisons, detail, skipped (a non-finite
    /// error is written as null).
    public var json: String {
        func number(_ x: Double) -> String { x.isFinite ? String(format: "%.3g", x) : "null" }
        let detailJSON = (try? String(decoding: JSONEncoder().encode(detail), as: UTF8.self)) ?? "\"\""
        return #"{"op": "\#(op)", "max_rel_error": \#(number(maxRelError)), "tolerance": \#(number(tolerance)), "#
            + #""pass": \#(pass), "seconds": \#(String(format: "%.3f", seconds)), "comparisons": \#(comparisons), "#
            + #""skipped": \#(skipped), "detail": \#(detailJSON)}"#
    }

    /// One line for people: `PASS  gemm.kernel.NN  max rel error 1.2e-07 ≤ 3.9e-05  0.41 s  (worst: ...)`.
    public var line: String {
        let status = skipped ? "SKIP" : pass ? "PASS" : "FAIL"
        let figures = skipped ? "" : String(format: "  max rel error %.2e %@ %.2e", maxRelError, pass ? "≤" : ">", tolerance)
        return "\(status)  \(op.padding(toLength: max(op.count, 30), withPad: " ", startingAt: 0))\(figures)"
            + String(format: "  %.2f s", seconds) + (detail.isEmpty ? "" : "  (\(detail))")
    }
}

/// What a check yields: comparisons, or a reason it cannot run on this machine.
enum CheckOutcome {
    case compared([Comparison])
    case skipped(String)
}

/// A named check.
struct Check: Sendable {
    let name: String
    let body: @Sendable (Selftest) throws -> CheckOutcome
}

/// Runs the checks on one OpenCL device against the CPU backend.
public final class Selftest: @unchecked Sendable {
    /// The device under test. Use a backend made for the selftest: `kernelCoverage` counts the kernels it created.
    public let device: OpenCLBackend
    /// The reference.
    public let cpu: CPUBackend

    public init(device: OpenCLBackend, cpu: CPUBackend = .shared) {
        (self.device, self.cpu) = (device, cpu)
    }

    /// Every check, in the order they run (the kernel coverage check comes after them).
    static let checks: [Check] = gemmChecks + attentionChecks + rowChecks + elementwiseChecks + loraChecks + nf4Checks
        + multiLoRAChecks
        + trainingChecks

    /// The names of the checks, in order; the last is `kernels`, the coverage check.
    public static var checkNames: [String] { checks.map(\.name) + [coverageName] }

    static let coverageName = "kernels"

    /// Runs the checks whose names `include` accepts (nil: all of them, then the kernel coverage check), calling
    /// `report` with each result as it is known.
    @discardableResult
    public func run(include: ((String) -> Bool)? = nil, report: (SelftestResult) -> Void = { _ in }) -> [SelftestResult] {
        var results: [SelftestResult] = []
        for check in Self.checks where include?(check.name) ?? true {
            let result = run(check)
            results.append(result)
            report(result)
        }
        if include?(Self.coverageName) ?? true {
            let coverage = kernelCoverage()
            results.append(coverage)
            report(coverage)
        }
        return results
    }

    /// Runs one check, timing it and turning a thrown error into a failure.
    func run(_ check: Check) -> SelftestResult {
        let start = DispatchTime.now().uptimeNanoseconds
        func seconds() -> Double { Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 }
        do {
            let outcome = try check.body(self)
            try device.synchronize()
            switch outcome {
            case .skipped(let reason):
                return SelftestResult(op: check.name, maxRelError: 0, tolerance: 0, pass: true, seconds: seconds(),
                                      comparisons: 0, detail: reason, skipped: true)
            case .compared(let comparisons):
                return Self.summarize(check.name, comparisons, seconds: seconds())
            }
        } catch {
            return SelftestResult(op: check.name, maxRelError: .infinity, tolerance: 0, pass: false, seconds: seconds(),
                                  comparisons: 0, detail: "error: \(error)")
        }
    }

    /// One result from a check's comparisons: the worst (the largest error relative to its bound) speaks for all.
    static func summarize(_ name: String, _ comparisons: [Comparison], seconds: Double) -> SelftestResult {
        guard let worst = comparisons.max(by: { $0.ratio < $1.ratio }) else {
            return SelftestResult(op: name, maxRelError: .infinity, tolerance: 0, pass: false, seconds: seconds,
                                  comparisons: 0, detail: "nothing was compared")
        }
        let failed = comparisons.filter { !$0.passed }.count
        let detail = (failed > 0 ? "\(failed) of \(comparisons.count) failed; worst: " : "worst: ") + worst.label
        return SelftestResult(op: name, maxRelError: worst.error, tolerance: worst.tolerance, pass: failed == 0,
                              seconds: seconds, comparisons: comparisons.count, detail: detail)
    }

    /// Whether every kernel function in the device's kernel files has been created (so launched) by this backend:
    /// a kernel added to Kernels/ without a check fails here, named.
    public func kernelCoverage() -> SelftestResult {
        let start = DispatchTime.now().uptimeNanoseconds
        do {
            let all = try device.kernelFunctions()
            let missing = all.subtracting(device.createdKernels).sorted()
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            let detail = missing.isEmpty ? "all \(all.count) kernel functions ran"
                : "\(missing.count) of \(all.count) kernel functions never ran: " + missing.joined(separator: ", ")
            return SelftestResult(op: Self.coverageName, maxRelError: missing.isEmpty ? 0 : .infinity, tolerance: 0,
                                  pass: missing.isEmpty, seconds: seconds, comparisons: all.count, detail: detail)
        } catch {
            return SelftestResult(op: Self.coverageName, maxRelError: .infinity, tolerance: 0, pass: false, seconds: 0,
                                  comparisons: 0, detail: "error: \(error)")
        }
    }

    // MARK: - Helpers for the checks

    /// `body` on the device, then on the CPU.
    func both<T>(_ body: (any Backend) throws -> T) throws -> (device: T, cpu: T) {
        (try body(device), try body(cpu))
    }
}

/// `count` values uniform in `[-bound, bound)` from `seed`.
func randomValues(_ count: Int, seed: UInt64, bound: Float = 1) -> [Float] {
    var generator = SeededGenerator(seed: seed)
    return generator.uniform(count: count, bound: bound)
}

/// `values` rounded to `dtype` (float32: unchanged) and widened back: what a tensor of that dtype holds.
func rounded(_ values: [Float], to dtype: DType) -> [Float] {
    switch dtype {
    case .bfloat16: values.map { Convert.float(bfloat16: Convert.bfloat16($0)) }
    case .float16: values.map { Convert.float(float16: Convert.float16($0)) }
    default: values
    }
}

extension Backend {
    /// `values` (already representable in `dtype`) in a new tensor of that dtype.
    func upload(_ values: [Float], as dtype: DType, shape: [Int]) throws -> Tensor {
        switch dtype {
        case .float32: return try upload(values, shape: shape)
        case .bfloat16:
            let bits = values.map { Convert.bfloat16($0) }
            return try bits.withUnsafeBytes { try upload(bytes: $0, dtype: .bfloat16, shape: shape) }
        case .float16:
            let bits = values.map { Convert.float16($0) }
            return try bits.withUnsafeBytes { try upload(bytes: $0, dtype: .float16, shape: shape) }
        default:
            throw LoRAError.unsupportedDType("selftest: cannot upload floats as \(dtype)")
        }
    }

    /// The bytes of `values` in a new uint8 tensor.
    func upload(bytes values: [UInt8]) throws -> Tensor {
        try values.withUnsafeBytes { try upload(bytes: $0, dtype: .uint8, shape: [values.count]) }
    }
}
