// Which kernel parameters an OpenCL backend runs with (`lora tune`'s cache file or the defaults, and the values), for
// the bench commands' text and JSON output: a benchmark figure means little without them.
import Foundation
import SwiftLoRA

struct KernelParametersInfo: Encodable {
    /// "defaults", "defaults (LORA_TUNE_CACHE=off)" or "tuned: <cache file>".
    let origin: String
    /// Every parameter by name, e.g. "gemm.TM".
    let values: [String: Int]
    /// Families as "gemm TM=12 TN=32 VW=16 WG=1; softmax GROUP=0 WG=256; ...".
    let summary: String

    /// The backend's parameters; nil for a backend without kernels (the CPU).
    init?(_ backend: any Backend) {
        guard let cl = backend as? OpenCLBackend else { return nil }
        let parameters = cl.kernelParameters
        (origin, values, summary) = (cl.kernelParametersOrigin, parameters.values, parameters.description)
    }

    /// One line for a bench's text output.
    var line: String { "kernel parameters: \(origin): \(summary)" }

    /// One JSON object (sorted keys).
    var json: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? encoder.encode(self)).map { String(decoding: $0, as: UTF8.self) } ?? "null"
    }

    /// Prints `line` for an OpenCL backend (text output only).
    static func announce(_ backend: any Backend, json: Bool) {
        if !json, let info = KernelParametersInfo(backend) { print(info.line) }
    }
}
