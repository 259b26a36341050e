// `lora devices`: every OpenCL platform and device, the CPU, which one would be chosen, and whether MPI (data-parallel
// `lora train` under mpirun or srun) is available.
import ArgumentParser
import Foundation
import SwiftLoRA

struct DevicesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "devices", abstract: "List OpenCL devices and the CPU, and show which one would be chosen.")

    @OptionGroup var options: DeviceOptions

    func run() throws {
        do {
            let devices = try OpenCL.devices()
            if devices.isEmpty { print("OpenCL: loaded, but no platforms or devices are installed") }
            var platform = ""
            for d in devices {
                if d.platformName != platform {
                    platform = d.platformName
                    print("OpenCL platform: \(d.platformName) (\(d.platformVersion))")
                }
                print("  opencl:\(d.index)  \(d.name)")
                print("      type \(d.kind.rawValue), \(d.openCLVersion), driver \(d.driverVersion), vendor \(d.vendor)")
                print("      \(d.computeUnits) compute units, \(megabytes(d.globalMemoryBytes)) global memory, "
                      + "\(megabytes(d.maxAllocationBytes)) largest buffer, \(d.localMemoryBytes / 1024) KiB local memory")
            }
            print("CLBlast: " + (OpenCL.isCLBlastAvailable ? "loaded (libclblast.so.1)" : "not loaded (install libclblast1 for it)"))
        } catch {
            print("OpenCL: unavailable: \(error)")
        }
        print("cpu  \(CPUBackend.shared.deviceDescription), \(ProcessInfo.processInfo.activeProcessorCount) cores")
        switch MPICommunicator.probe() {
        case .success(let library): print("MPI: \(library): lora train runs data-parallel under mpirun or srun")
        case .failure(let error): print("MPI: unavailable (lora train runs on one process): \(error)")
        }
        if let launch = MPILaunch.detect() { print("MPI launch: \(launch)") }
        do {
            let selection = try Devices.select(options.device)
            print("would choose: \(selection.backend.name) \(selection.backend.deviceDescription): \(selection.reason)")
        } catch {
            throw ValidationError("device \(options.device ?? ProcessInfo.processInfo.environment["LORA_DEVICE"] ?? "auto"): \(error)")
        }
    }

    private func megabytes(_ bytes: Int) -> String { "\(bytes / (1 << 20)) MiB" }
}
