// Shared by the test targets: the OpenCL backend under test (or the reason it is absent), random data,
// and the `atol + rtol·|ref|` comparison every device test uses.
import Foundation
import SwiftLoRA

public enum TestDevices {
    /// Set in CI: OpenCL tests must run, and fail rather than skip when no device can be opened.
    public static let openCLRequired = ProcessInfo.processInfo.environment["LORA_REQUIRE_OPENCL"] == "1"

    /// The OpenCL backend the tests use (device `LORA_TEST_OPENCL_DEVICE`, default the first device).
    public static let openCL: Result<OpenCLBackend, Error> = Result {
        let index = Int(ProcessInfo.processInfo.environment["LORA_TEST_OPENCL_DEVICE"] ?? "0") ?? 0
        let backend = try OpenCLBackend(index: index)
        FileHandle.standardError.write(Data("OpenCL tests run on \(backend.name): \(backend.deviceDescription)\n".utf8))
        return backend
    }

    /// Whether OpenCL tests should run: a device opened, or CI demands they run (and fail if it did not).
    public static var runOpenCL: Bool {
        if case .success = openCL { return true }
        return openCLRequired
    }

    /// Why OpenCL tests are skipped.
    public static var skipReason: String {
        if case .failure(let error) = openCL { return "no OpenCL device: \(error)" }
        return ""
    }

    /// The devices a device-parameterized test runs on: "cpu", and "opencl" where OpenCL tests run.
    public static var names: [String] { runOpenCL ? ["cpu", "opencl"] : ["cpu"] }

    /// Both backends where OpenCL exists (CPU first), so a test can loop over devices.
    public static func all() throws -> [any Backend] {
        guard runOpenCL else { return [CPUBackend.shared] }
        return [CPUBackend.shared, try openCL.get()]
    }
}

/// Deterministic test data in [-1, 1).
public func randomValues(_ count: Int, seed: UInt64) -> [Float] {
    var generator = SeededGenerator(seed: seed)
    return generator.uniform(count: count, bound: 1)
}

/// The first index where `actual` differs from `expected` by more than `atol + rtol·|expected|`, described;
/// nil when all are close. Sizes must match.
public func firstMismatch(_ actual: [Float], _ expected: [Float], atol: Float = 1e-5, rtol: Float = 1e-4) -> String? {
    firstMismatch(actual, expected.map(Double.init), atol: Double(atol), rtol: Double(rtol))
}

/// Same as `firstMismatch` for Double references.
public func firstMismatch(_ actual: [Float], _ expected: [Double], atol: Double = 1e-5, rtol: Double = 1e-4) -> String? {
    guard actual.count == expected.count else { return "count \(actual.count) != \(expected.count)" }
    for i in actual.indices where Double(actual[i]) != expected[i] {  // equal infinities are close
        let diff = abs(Double(actual[i]) - expected[i])
        if !(diff <= atol + rtol * abs(expected[i])) {
            return "element \(i): got \(actual[i]), expected \(expected[i]) (|diff| \(diff))"
        }
    }
    return nil
}

/// The backend a device-parameterized test runs on: "cpu" or "opencl".
public func testBackend(_ name: String) throws -> any Backend {
    name == "cpu" ? CPUBackend.shared : try TestDevices.openCL.get()
}

/// Logits and loss "to ~1e-5 relative": relative to the largest magnitude, plus 1e-5 of each element.
public func logitMismatch(_ got: [Float], _ expected: [Float]) -> String? {
    let scale = expected.map(abs).max() ?? 1
    return firstMismatch(got, expected, atol: 1e-5 * scale, rtol: 1e-5)
}
