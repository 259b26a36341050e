// `lora tune`'s cache: one JSON file per device and driver under `$XDG_CACHE_HOME/swift-lora/` (else
// `~/.cache/swift-lora/`), named by a hash of the device's name, vendor and driver version. It holds those three, a
// hash of the kernel sources it was measured with, the chosen parameter values and the measurements:
//   {"format": 1, "device": ..., "vendor": ..., "driver": ..., "kernels": "<16 hex>", "parameters": {"gemm.TM": 12, ...},
//    "results": [{"family": "gemm", "default_seconds": ..., "tuned_seconds": ...}, ...]}
// A backend reads it at start. A file that does not parse, names an unknown parameter, holds a value the device cannot
// run, or is stale (another device or driver, or kernels edited since) is ignored with a one-line warning on stderr,
// and the backend runs with the defaults. `LORA_TUNE_CACHE=off` skips the file. Written to a temporary file and
// renamed, so a reader never sees half a file.
import Foundation
import LoRAFormats

/// Where an OpenCL backend's kernel parameters come from.
public enum KernelTuning: Sendable {
    /// The device's file in `lora tune`'s cache folder `directory` (nil: `$XDG_CACHE_HOME/swift-lora`, else
    /// `~/.cache/swift-lora`), unless `LORA_TUNE_CACHE=off`; the defaults where there is none.
    case cache(directory: String?)
    /// The per-device-kind defaults, whatever is cached.
    case defaults
    /// These values (they must be legal on the device).
    case parameters(KernelParameters)
}

/// Reading and writing `lora tune`'s cache files.
public enum TuningCache {
    public static let format = 1

    /// The cache folder: `directory` when given, else `$XDG_CACHE_HOME/swift-lora`, else `~/.cache/swift-lora`.
    public static func folder(_ directory: String? = nil) -> URL {
        if let directory { return URL(fileURLWithPath: directory) }
        if let xdg = environment("XDG_CACHE_HOME"), xdg.hasPrefix("/") {
            return URL(fileURLWithPath: xdg).appendingPathComponent("swift-lora")
        }
        let home = environment("HOME") ?? NSHomeDirectory()
        return URL(fileURLWithPath: home).appendingPathComponent(".cache/swift-lora")
    }

    /// The device's cache file in `folder(directory)`: a hash of its name, vendor and driver version.
    public static func file(for device: OpenCLDeviceInfo, directory: String? = nil) -> URL {
        folder(directory).appendingPathComponent(fnv1a([device.name, device.vendor, device.driverVersion].joined(separator: "\u{0}")) + ".json")
    }

    /// Whether `LORA_TUNE_CACHE` turns reading the cache off.
    static var readingDisabled: Bool {
        guard let value = environment("LORA_TUNE_CACHE")?.lowercased() else { return false }
        return ["off", "0", "no", "false"].contains(value)
    }

    /// FNV-1a, 64 bits, as 16 hex digits (a cache key, not a security measure).
    static func fnv1a(_ text: String) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        let digits = String(hash, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }

    /// What a cache file holds.
    public struct Entry: Sendable, Equatable {
        public var device: String, vendor: String, driver: String
        /// `fnv1a` of the kernel sources the values were measured with.
        public var kernels: String
        public var parameters: KernelParameters
        /// Per family: the default's and the chosen values' measured seconds.
        public var results: [(family: String, defaultSeconds: Double, tunedSeconds: Double)]

        public static func == (a: Entry, b: Entry) -> Bool {
            a.device == b.device && a.vendor == b.vendor && a.driver == b.driver && a.kernels == b.kernels
                && a.parameters == b.parameters && a.results.elementsEqual(b.results) { $0 == $1 }
        }
    }

    /// Writes `entry` as the device's file through a temporary file and a rename; returns its path.
    @discardableResult
    public static func write(_ entry: Entry, for device: OpenCLDeviceInfo, directory: String? = nil) throws -> URL {
        let url = file(for: device, directory: directory)
        let object: [String: Any] = [
            "format": format, "device": entry.device, "vendor": entry.vendor, "driver": entry.driver,
            "kernels": entry.kernels, "parameters": entry.parameters.values,
            "results": entry.results.map { ["family": $0.family, "default_seconds": $0.defaultSeconds, "tuned_seconds": $0.tunedSeconds] },
        ]
        let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try AtomicFile.write(data, to: url.path)
        return url
    }

    /// Parses a cache file's bytes; the error says what is wrong (the caller names the file).
    public static func parse(_ data: Data, kind: OpenCLDeviceKind) -> Result<Entry, TuningCacheProblem> {
        guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            return .failure(.malformed("not a JSON object"))
        }
        guard let version = object["format"] as? Int, version == format else {
            return .failure(.malformed("format is \(object["format"].map { "\($0)" } ?? "missing"), expected \(format)"))
        }
        func text(_ key: String) -> String? { object[key] as? String }
        guard let device = text("device"), let vendor = text("vendor"), let driver = text("driver"), let kernels = text("kernels") else {
            return .failure(.malformed("device, vendor, driver and kernels must be strings"))
        }
        guard let values = object["parameters"] as? [String: Any] else { return .failure(.malformed("parameters is not an object")) }
        var parameters = KernelParameters.defaults(for: kind)
        for (name, value) in values.sorted(by: { $0.key < $1.key }) {
            guard KernelParameter.named(name) != nil else { return .failure(.unknownParameter(name)) }
            guard let number = value as? Int else { return .failure(.malformed("parameters.\(name) is not an integer")) }
            parameters[name] = number
        }
        var results: [(String, Double, Double)] = []
        for item in object["results"] as? [[String: Any]] ?? [] {
            guard let family = item["family"] as? String, let d = item["default_seconds"] as? Double,
                  let t = item["tuned_seconds"] as? Double else { return .failure(.malformed("a results entry lacks family or seconds")) }
            results.append((family, d, t))
        }
        return .success(Entry(device: device, vendor: vendor, driver: driver, kernels: kernels, parameters: parameters, results: results))
    }

    /// The parameters cached for `device` with kernel sources hashing to `kernels`, or why not (nil when there is
    /// simply no file).
    static func load(for device: OpenCLDeviceInfo, kernels: String, directory: String?) -> (url: URL, outcome: Result<Entry, TuningCacheProblem>)? {
        let url = file(for: device, directory: directory)
        guard let data = FileManager.default.contents(atPath: url.path) else { return nil }
        let outcome = parse(data, kind: device.kind).flatMap { entry -> Result<Entry, TuningCacheProblem> in
            if entry.device != device.name || entry.vendor != device.vendor || entry.driver != device.driverVersion {
                return .failure(.stale("tuned on \(entry.device) (\(entry.vendor), driver \(entry.driver)), "
                    + "this is \(device.name) (\(device.vendor), driver \(device.driverVersion))"))
            }
            if entry.kernels != kernels {
                return .failure(.stale("the kernels changed since it was tuned (kernel hash \(entry.kernels), now \(kernels))"))
            }
            if let violation = entry.parameters.violation(on: device) { return .failure(.illegal(violation)) }
            return .success(entry)
        }
        return (url, outcome)
    }
}

/// Why a tuning cache file was ignored.
public enum TuningCacheProblem: Error, Equatable, CustomStringConvertible {
    case malformed(String)
    case unknownParameter(String)
    case illegal(String)
    case stale(String)

    public var description: String {
        switch self {
        case .malformed(let why): "it does not parse: \(why)"
        case .unknownParameter(let name): "unknown parameter \(name)"
        case .illegal(let why): "illegal value: \(why)"
        case .stale(let why): "stale: \(why)"
        }
    }
}
