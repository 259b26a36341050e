// Which kernels exist and which ones a backend has used: every `__kernel` function in the kernel files this backend
// builds from (the embedded Kernels/*.cl, or LORA_KERNELS_DIR's), and the kernels it has created so far. `lora selftest`
// compares the two, so a kernel added to Kernels/ that nothing exercises fails the selftest.
// Names are "file/function", e.g. "matmul/pack_b". common.cl holds helpers only (no kernels; it is prepended to each file).
import Foundation

extension OpenCLBackend {
    /// Every kernel function in this backend's kernel files, as "file/function".
    public func kernelFunctions() throws -> Set<String> {
        var names: Set<String> = []
        for file in try Self.kernelFileNames(directory: kernelsDirectory) where file != "common" {
            let source = try KernelSources.source(named: file, directory: kernelsDirectory)
            for function in Self.kernelFunctionNames(in: source) { names.insert(file + "/" + function) }
        }
        return names
    }

    /// The kernels this backend has created (each is created on its first launch), as "file/function", whatever
    /// their build options.
    public var createdKernels: Set<String> {
        lock.withLock {
            Set(kernels.keys.map { key in
                let parts = key.split(separator: "\u{0}", omittingEmptySubsequences: false)
                return "\(parts.first ?? "")/\(parts.last ?? "")"
            })
        }
    }

    /// The kernel files (without `.cl`): the embedded ones, or the `.cl` files in LORA_KERNELS_DIR.
    static func kernelFileNames(directory: String?) throws -> [String] {
        guard let directory else { return KernelSources.embeddedNames }
        let entries: [String]
        do { entries = try FileManager.default.contentsOfDirectory(atPath: directory) } catch {
            throw OpenCLError.kernelSourceMissing("\(directory) (LORA_KERNELS_DIR) cannot be listed: \(error.localizedDescription)")
        }
        return entries.filter { $0.hasSuffix(".cl") }.map { String($0.dropLast(3)) }.sorted()
    }

    /// The names of the `__kernel` (or `kernel`) functions defined in OpenCL C `source`, comments ignored. An
    /// attribute may stand between the qualifier and `void`, on the same line or the next.
    public static func kernelFunctionNames(in source: String) -> [String] {
        let code = strippingComments(source)
        var names: [String] = []
        let qualifier = /\b(?:__kernel|kernel)\b/
        let declaration = /^\s*(?:__attribute__\s*\(\((?:[^()]|\([^()]*\))*\)\)\s*)*void\s+([A-Za-z_][A-Za-z0-9_]*)\s*\(/
        var rest = code[...]
        while let match = rest.firstMatch(of: qualifier) {
            rest = rest[match.range.upperBound...]
            if let function = rest.prefixMatch(of: declaration) { names.append(String(function.output.1)) }
        }
        return names
    }

    /// `source` with `//` and `/* */` comments replaced by spaces (string literals do not occur in kernels).
    private static func strippingComments(_ source: String) -> String {
        source.replacing(/\/\*(?s:.*?)\*\//, with: " ").replacing(/\/\/[^\n]*/, with: "")
    }
}
