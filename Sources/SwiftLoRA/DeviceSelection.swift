// Choosing the device, once per process: `LORA_DEVICE` (or a `--device` flag) says `cpu`, `opencl`,
// `opencl:N` or `auto`; `auto` takes the first OpenCL GPU, else the CPU. An explicit OpenCL request never falls
// back to the CPU: it succeeds or throws an error that names what is missing. A rank of a data-parallel job passes its
// local rank, and `opencl`/`auto` then spread the ranks of a node over its GPUs (local rank modulo their count).
import Foundation

/// What the user asked for.
public enum DeviceRequest: Equatable, Sendable, CustomStringConvertible {
    /// The first OpenCL GPU, else the CPU.
    case automatic
    case cpu
    /// An OpenCL device: the given index, or (nil) the first GPU, else the first device.
    case opencl(Int?)

    /// Parses `auto`, `cpu`, `opencl` or `opencl:N`.
    public init(parsing text: String) throws {
        let lower = text.lowercased()
        switch lower {
        case "auto", "": self = .automatic
        case "cpu": self = .cpu
        case "opencl", "gpu": self = .opencl(nil)
        default:
            guard lower.hasPrefix("opencl:"), let index = Int(lower.dropFirst("opencl:".count)), index >= 0 else {
                throw LoRAError.invalidArgument("device \"\(text)\": expected cpu, opencl, opencl:N or auto")
            }
            self = .opencl(index)
        }
    }

    public var description: String {
        switch self {
        case .automatic: "auto"
        case .cpu: "cpu"
        case .opencl(nil): "opencl"
        case .opencl(let i?): "opencl:\(i)"
        }
    }
}

/// The chosen backend and a phrase saying why it was chosen (`first OpenCL GPU`, `LORA_DEVICE=cpu`, ...).
public struct DeviceSelection: Sendable {
    public let backend: any Backend
    public let reason: String
}

public enum Devices {
    /// Chooses a device for `spec` (nil: the `LORA_DEVICE` environment variable, else `auto`).
    /// - Parameters:
    ///   - openCLLibrary: the ICD loader to use (nil: `LORA_OPENCL_LIBRARY`, else `libOpenCL.so.1`).
    ///   - localRank: this process's rank on its node in a data-parallel job: `opencl` and `auto` take GPU
    ///     `localRank % GPUs` (without GPUs, `opencl` takes device `localRank % devices`); `opencl:N` and `cpu` are as asked.
    public static func select(_ spec: String? = nil, openCLLibrary: String? = nil, localRank: Int? = nil) throws -> DeviceSelection {
        let fromEnvironment = ProcessInfo.processInfo.environment["LORA_DEVICE"]
        let request = try DeviceRequest(parsing: spec ?? fromEnvironment ?? "auto")
        let origin = spec != nil ? "requested" : fromEnvironment != nil ? "LORA_DEVICE=\(fromEnvironment!)" : "default"
        return try select(request, origin: origin, openCLLibrary: openCLLibrary, localRank: localRank)
    }

    static func select(_ request: DeviceRequest, origin: String, openCLLibrary: String?, localRank: Int? = nil) throws -> DeviceSelection {
        switch request {
        case .opencl(nil) where localRank != nil, .automatic where localRank != nil:
            let devices: [OpenCLDeviceInfo]
            do { devices = try OpenCL.devices(library: openCLLibrary) } catch {
                if request == .automatic { return DeviceSelection(backend: CPUBackend.shared, reason: "OpenCL unavailable (\(error))") }
                throw error
            }
            let gpus = devices.filter { $0.kind == .gpu }
            let pool = gpus.isEmpty && request != .automatic ? devices : gpus
            guard !pool.isEmpty else {
                if request == .automatic { return DeviceSelection(backend: CPUBackend.shared, reason: "no OpenCL GPU") }
                throw OpenCLError.noDevices
            }
            let chosen = pool[localRank! % pool.count]
            let backend = try OpenCLBackend(index: chosen.index, library: openCLLibrary)
            return DeviceSelection(backend: backend, reason: "local rank \(localRank!) of this node, \(pool.count) OpenCL "
                + (gpus.isEmpty ? "device" : "GPU") + (pool.count == 1 ? "" : "s") + " (\(origin))")
        case .cpu:
            return DeviceSelection(backend: CPUBackend.shared, reason: origin)
        case .opencl(let index):
            let devices = try OpenCL.devices(library: openCLLibrary)
            guard !devices.isEmpty else { throw OpenCLError.noDevices }
            let chosen = index ?? devices.first(where: { $0.kind == .gpu })?.index ?? 0
            let backend = try OpenCLBackend(index: chosen, library: openCLLibrary)
            return DeviceSelection(backend: backend, reason: origin)
        case .automatic:
            let devices: [OpenCLDeviceInfo]
            do { devices = try OpenCL.devices(library: openCLLibrary) } catch {
                return DeviceSelection(backend: CPUBackend.shared, reason: "OpenCL unavailable (\(error))")
            }
            guard let gpu = devices.first(where: { $0.kind == .gpu }) else {
                let others = devices.isEmpty ? "no OpenCL devices"
                    : "no OpenCL GPU; LORA_DEVICE=opencl:N selects one of: "
                        + devices.map { "opencl:\($0.index) \($0.name)" }.joined(separator: ", ")
                return DeviceSelection(backend: CPUBackend.shared, reason: others)
            }
            let backend = try OpenCLBackend(index: gpu.index, library: openCLLibrary)
            return DeviceSelection(backend: backend, reason: "first OpenCL GPU")
        }
    }
}
