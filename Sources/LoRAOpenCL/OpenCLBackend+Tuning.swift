// Which kernel parameters a backend runs with (KernelParameters.swift): resolved once at start from `lora tune`'s
// cache (TuningCache.swift) or the defaults, and swapped only by the tuner while it measures candidates. Programs are
// cached by their build options, which carry the values, so a swap never runs a program built for other values.
import Foundation
import LoRARuntime

extension OpenCLBackend {
    /// The parameters the kernels are built and launched with.
    public var kernelParameters: KernelParameters { lock.withLock { parameters } }

    /// Runs later launches with `values` (the tuner's candidates; tests). They must be legal on the device.
    func use(_ values: KernelParameters) {
        precondition(values.violation(on: device) == nil, "illegal kernel parameters: \(values.violation(on: device)!)")
        lock.withLock { parameters = values }
    }

    /// Runs `body` with the kernels built and launched with `values`, then restores the backend's own (the selftest
    /// runs the variants a device would not pick this way). Nothing else may run on the backend meanwhile.
    /// Throws `LoRAError.invalidArgument` when `values` cannot run on the device.
    public func withKernelParameters<T>(_ values: KernelParameters, _ body: () throws -> T) throws -> T {
        if let violation = values.violation(on: device) { throw LoRAError.invalidArgument("kernel parameters: \(violation)") }
        let saved = kernelParameters
        use(values)
        defer { use(saved) }
        return try body()
    }

    /// `fnv1a` of every kernel source this backend builds from (embedded, or LORA_KERNELS_DIR's), in name order.
    public var kernelSourceHash: String { get throws { try Self.kernelSourceHash(directory: kernelsDirectory) } }

    static func kernelSourceHash(directory: String?) throws -> String {
        let names = try kernelFileNames(directory: directory)
        let text = try names.map { "\($0)\u{0}" + (try KernelSources.source(named: $0, directory: directory)) }
        return TuningCache.fnv1a(text.joined(separator: "\u{0}"))
    }

    /// The parameters for `tuning` on `device`, where they came from, and why a cache file was ignored.
    static func resolve(_ tuning: KernelTuning, device: OpenCLDeviceInfo, kernelsDirectory: String?) throws
        -> (KernelParameters, origin: String, warning: String?) {
        let defaults = KernelParameters.defaults(for: device.kind)
        switch tuning {
        case .defaults:
            return (defaults, "defaults", nil)
        case .parameters(let values):
            if let violation = values.violation(on: device) { throw LoRAError.invalidArgument("kernel parameters: \(violation)") }
            return (values, "given", nil)
        case .cache(let directory):
            if TuningCache.readingDisabled { return (defaults, "defaults (LORA_TUNE_CACHE=off)", nil) }
            let hash: String
            do { hash = try kernelSourceHash(directory: kernelsDirectory) } catch {
                return (defaults, "defaults", "tuning cache not read: the kernel sources cannot be hashed (\(error))")
            }
            guard let (url, outcome) = TuningCache.load(for: device, kernels: hash, directory: directory) else {
                return (defaults, "defaults", nil)
            }
            switch outcome {
            case .success(let entry): return (entry.parameters, "tuned: \(url.path)", nil)
            case .failure(let problem):
                return (defaults, "defaults", "ignoring tuning cache \(url.path): \(problem); using the default kernel parameters")
            }
        }
    }
}
