// `--device` for the commands that measure or check one OpenCL device (`lora selftest`, `lora tune`): the device
// named, else LORA_DEVICE when it names an OpenCL device, else the first GPU (or device).
import ArgumentParser
import Foundation
import SwiftLoRA

/// Why a command that needs an OpenCL device could not open one: printed as `Error: ...`, exit status 1.
struct OpenCLDeviceError: Error, CustomStringConvertible {
    let description: String
}

/// Opens the OpenCL device `device` names (nil: LORA_DEVICE if it names one, else "opencl"). `command` and `purpose`
/// make the errors: "lora tune measures an OpenCL device".
func openCLDevice(_ device: String?, command: String, purpose: String) throws -> OpenCLBackend {
    var spec = device ?? "opencl"
    if device == nil, let environment = ProcessInfo.processInfo.environment["LORA_DEVICE"],
       case .opencl? = try? DeviceRequest(parsing: environment) {
        spec = environment
    }
    let request: DeviceRequest
    do { request = try DeviceRequest(parsing: spec) } catch { throw ValidationError("--device: \(error)") }
    guard case .opencl = request else {
        throw ValidationError("--device \(spec): \(command) \(purpose); give opencl or opencl:N")
    }
    let backend: any Backend
    do { backend = try Devices.select(request.description).backend } catch {
        throw OpenCLDeviceError(description: "\(command) needs an OpenCL device (\(spec)): \(error)")
    }
    guard let opened = backend as? OpenCLBackend else {
        throw OpenCLDeviceError(description: "--device \(spec) opened \(backend.name), not an OpenCL device")
    }
    return opened
}
