// Errors a caller or the environment can cause: wrong shapes, bad arguments, unsupported requests, host memory.
// Device-specific failures (an OpenCL status, a kernel build log) have their own error types in their modules.

/// An error in how an op or layer was called. The message names the op and the offending shapes or values.
public enum LoRAError: Error, CustomStringConvertible, Equatable {
    /// Shapes that do not fit together, e.g. `gemm: op(A) is [3, 4] but op(B) is [5, 6]`.
    case shapeMismatch(String)
    /// An argument out of its valid range, e.g. a LoRA rank larger than the layer.
    case invalidArgument(String)
    /// A tensor handed to a backend that does not own it.
    case wrongDevice(String)
    /// A state in which the request cannot be served, e.g. backward through a merged layer.
    case invalidState(String)
    /// A tensor whose element type the op does not take, e.g. `gemm: C [4, 4] is bfloat16 (expected float32)`.
    case unsupportedDType(String)
    /// An allocation the system refused, e.g. host memory for a tensor: the bytes asked for and where.
    case outOfMemory(bytes: Int, device: String)

    public var description: String {
        switch self {
        case .shapeMismatch(let m): "shape mismatch: \(m)"
        case .invalidArgument(let m): "invalid argument: \(m)"
        case .wrongDevice(let m): "wrong device: \(m)"
        case .invalidState(let m): "invalid state: \(m)"
        case .unsupportedDType(let m): "unsupported dtype: \(m)"
        case .outOfMemory(let bytes, let device): "out of memory: \(bytes) bytes on \(device)"
        }
    }
}

/// Formats a shape the way errors print it: `[2, 3, 4]`.
public func describe(_ shape: [Int]) -> String { "[" + shape.map(String.init).joined(separator: ", ") + "]" }
