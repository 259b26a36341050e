// Where kernel sources come from: the copies embedded at build time from Kernels/*.cl, or, when
// `LORA_KERNELS_DIR` names a folder, the .cl files in it (for editing kernels without rebuilding).
import Foundation

enum KernelSources {
    /// The names of the embedded kernel files (without `.cl`).
    static var embeddedNames: [String] { EmbeddedKernels.sources.keys.sorted() }

    /// The source of `Kernels/<name>.cl`, from `directory` when given, else the embedded copy.
    static func source(named name: String, directory: String?) throws -> String {
        if let directory {
            let path = URL(fileURLWithPath: directory).appendingPathComponent(name + ".cl").path
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw OpenCLError.kernelSourceMissing("\(path) (LORA_KERNELS_DIR=\(directory)) cannot be read")
            }
            return text
        }
        guard let text = EmbeddedKernels.sources[name] else {
            throw OpenCLError.kernelSourceMissing("\(name).cl is not embedded in this build")
        }
        return text
    }
}
