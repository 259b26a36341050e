// The CPU backend: pure Swift, no BLAS. It is the specification and the test oracle for every other backend,
// and the fallback wherever no OpenCL device exists. Inner loops run on raw pointers, never Array subscripts.

import Foundation

/// Host memory for a CPU tensor: 64-byte aligned, zero-initialized.
public final class CPUStorage: TensorStorage, @unchecked Sendable {
    public let byteCount: Int
    /// The elements. Mutated only through backend ops.
    public let pointer: UnsafeMutablePointer<Float>

    init(count: Int) {
        byteCount = count * MemoryLayout<Float>.stride
        let raw = UnsafeMutableRawPointer.allocate(byteCount: byteCount, alignment: 64)
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: byteCount)
        pointer = raw.bindMemory(to: Float.self, capacity: count)
    }

    deinit { UnsafeMutableRawPointer(pointer).deallocate() }
}

/// Runs every op on the host CPU.
public final class CPUBackend: Backend {
    public let name = "cpu"
    public var deviceDescription: String {
        "CPU (pure Swift, \(pool.threadCount) thread\(pool.threadCount == 1 ? "" : "s"), "
            + (CPUBackend.fusedMultiplyAdd ? "FMA" : "no FMA: build with -target-cpu native for full speed") + ")"
    }
    /// The threads every op of this backend splits its work over.
    public let pool: ThreadPool

    public init(pool: ThreadPool = .shared) { self.pool = pool }

    /// A shared instance on the shared pool; the backend holds no other state.
    public static let shared = CPUBackend()

    /// The element pointer of a tensor this backend owns.
    func elements(_ t: Tensor) -> UnsafeMutablePointer<Float> {
        // Safe: every op validated ownership (`requireOwned`) before it reaches here.
        unsafeDowncast(t.storage, to: CPUStorage.self).pointer
    }

    public func zeros(_ shape: [Int]) throws -> Tensor {
        try Tensor.validate(shape: shape)
        return try Tensor(shape: shape, storage: CPUStorage(count: shape.reduce(1, *)), backend: self)
    }

    /// Host memory is zeroed anyway: allocation dominates, and zeros keep CPU results reproducible.
    public func empty(_ shape: [Int]) throws -> Tensor { try zeros(shape) }

    public func upload(_ values: [Float], shape: [Int]) throws -> Tensor {
        try validateUpload(values, shape: shape)
        let t = try zeros(shape)
        values.withUnsafeBufferPointer { elements(t).update(from: $0.baseAddress!, count: values.count) }
        return t
    }

    public func download(_ tensor: Tensor) throws -> [Float] {
        try requireOwned("download", tensor)
        return Array(UnsafeBufferPointer(start: elements(tensor), count: tensor.count))
    }

    public func synchronize() throws {}

    /// MemAvailable from /proc/meminfo.
    public var memoryCapacity: Int? {
        guard let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("MemAvailable:") }),
              let kb = line.split(separator: " ").dropFirst().first.flatMap({ Int($0) }) else { return nil }
        return kb * 1024
    }
}
