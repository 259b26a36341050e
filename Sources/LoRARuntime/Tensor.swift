// Tensor: a row-major, contiguous block of elements that lives on one backend's device.
// A tensor never moves by itself: `backend.upload` / `backend.download` are the only bus crossings.
import Synchronization

/// Element type of a tensor's storage. Storage is byte-addressed (`count · size` bytes); math is float32 whatever
/// the storage: ops that accept 16-bit floats convert as they load (weights keep their file's dtype on the device).
public enum DType: String, Sendable, Equatable, CaseIterable {
    case float32
    /// bfloat16: the upper half of a float32's bits (8 exponent bits, 7 mantissa bits).
    case bfloat16
    /// IEEE 754 binary16 (5 exponent bits, 10 mantissa bits).
    case float16
    /// Token ids, targets, positions, indices.
    case int32
    /// Raw bytes (packed quantized weights).
    case uint8

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .float32, .int32: 4
        case .bfloat16, .float16: 2
        case .uint8: 1
        }
    }

    /// float32, bfloat16 or float16: the dtypes `Convert` and typed GEMM operands take.
    public var isFloatingPoint: Bool { self == .float32 || self == .bfloat16 || self == .float16 }

    /// The floating-point dtypes.
    public static let floatingPoint: [DType] = [.float32, .bfloat16, .float16]
}

/// Device memory owned by a backend. The backend that made it is the only one that can read it.
public protocol TensorStorage: AnyObject, Sendable {
    /// Size of the allocation in bytes (at least `count * dtype.size` of every tensor viewing it).
    var byteCount: Int { get }
}

/// An n-dimensional array on a device.
///
/// Shapes are row-major: the last axis is contiguous. Every dimension is at least 1.
/// `reshaped(_:)` gives a view that shares storage.
public final class Tensor: @unchecked Sendable {
    public let shape: [Int]
    public let dtype: DType
    /// Device memory; shared with every view of this tensor.
    public let storage: any TensorStorage
    /// The backend whose device holds `storage`.
    public let backend: any Backend
    private let packingSlot = Mutex<WeightPacking?>(nil)

    /// This weight laid out once for its backend's GEMM (`Backend.packWeight`), which products reading the whole
    /// tensor as operand B then use instead of laying it out again. Whoever writes the tensor afterwards must set
    /// it to nil (or pack again): the copy does not follow writes.
    public var packing: WeightPacking? {
        get { packingSlot.withLock { $0 } }
        set { packingSlot.withLock { $0 = newValue } }
    }

    /// Number of elements.
    public var count: Int { shape.reduce(1, *) }
    /// Number of axes.
    public var rank: Int { shape.count }
    /// Bytes the elements take: `count · dtype.size`.
    public var byteCount: Int { count * dtype.size }

    /// Wraps storage a backend allocated. Backends call this; users call `backend.zeros` / `backend.upload`.
    public init(shape: [Int], dtype: DType = .float32, storage: any TensorStorage, backend: any Backend) throws {
        try Tensor.validate(shape: shape)
        let bytes = shape.reduce(1, *) * dtype.size
        guard bytes <= storage.byteCount else {
            throw LoRAError.invalidArgument(
                "tensor of shape \(describe(shape)) needs \(bytes) bytes but its storage has \(storage.byteCount)")
        }
        self.shape = shape
        self.dtype = dtype
        self.storage = storage
        self.backend = backend
    }

    /// Checks that a shape is usable: at least one axis, every dimension ≥ 1, and a count that fits in memory.
    public static func validate(shape: [Int]) throws {
        guard !shape.isEmpty, shape.allSatisfy({ $0 >= 1 }) else {
            throw LoRAError.invalidArgument("tensor shape \(describe(shape)) must have at least one axis, each ≥ 1")
        }
        var count = 1
        for d in shape {
            let (product, overflow) = count.multipliedReportingOverflow(by: d)
            guard !overflow, product <= Int(Int32.max) else {
                throw LoRAError.invalidArgument("tensor shape \(describe(shape)) has more than 2^31 - 1 elements (kernels index with 32-bit ints)")
            }
            count = product
        }
    }

    /// A view of the same elements with another shape of the same count.
    public func reshaped(_ newShape: [Int]) throws -> Tensor {
        try Tensor.validate(shape: newShape)
        guard newShape.reduce(1, *) == count else {
            throw LoRAError.shapeMismatch("cannot reshape \(describe(shape)) (\(count) elements) to \(describe(newShape))")
        }
        return try Tensor(shape: newShape, dtype: dtype, storage: storage, backend: backend)
    }

    /// Copies the elements to the host. Waits for pending work on the device. float32 tensors only.
    public func toArray() throws -> [Float] { try backend.download(self) }

    /// Throws `LoRAError.unsupportedDType` unless this tensor's dtype is one of `accepted`; the message names the op,
    /// the operand and the dtypes, e.g. `gemm: C is bfloat16 (expected float32)`.
    public func requireDType(_ accepted: [DType], op: String, operand: String) throws {
        guard accepted.contains(dtype) else {
            throw LoRAError.unsupportedDType("\(op): \(operand) \(describe(shape)) is \(dtype) (expected "
                + accepted.map(\.rawValue).joined(separator: " or ") + ")")
        }
    }
}

/// Throws `LoRAError.unsupportedDType` unless every named operand (nil ones are skipped) is float32: the check of
/// every op whose kernels read and write float32 only.
public func requireFloat32(_ op: String, _ operands: (String, Tensor?)...) throws {
    for case let (name, tensor?) in operands { try tensor.requireDType([.float32], op: op, operand: name) }
}

extension Tensor: CustomStringConvertible {
    public var description: String { "Tensor(\(describe(shape)), \(dtype), \(backend.name))" }
}
