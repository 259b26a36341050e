// The CPU backend: pure Swift, no BLAS. It is the specification and the test oracle for every other backend,
// and the fallback wherever no OpenCL device exists. Inner loops run on raw pointers, never Array subscripts.

import Foundation

/// Host memory for a CPU tensor: 64-byte aligned, from the host pool, contents unspecified until written.
public final class CPUStorage: TensorStorage, @unchecked Sendable {
    public let byteCount: Int
    /// The elements. Mutated only through backend ops.
    public let pointer: UnsafeMutablePointer<Float>
    private let pool: HostMemoryPool

    init(count: Int, pool: HostMemoryPool) {
        let (raw, bytes) = pool.allocate(bytes: count * MemoryLayout<Float>.stride)
        (byteCount, self.pool) = (bytes, pool)
        pointer = raw.bindMemory(to: Float.self, capacity: bytes / MemoryLayout<Float>.stride)
    }

    deinit { pool.recycle(UnsafeMutableRawPointer(pointer), byteCount: byteCount) }
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
    /// Where tensors' memory comes from and returns to.
    let memory = HostMemoryPool.shared

    public init(pool: ThreadPool = .shared) { self.pool = pool }

    /// A shared instance on the shared pool; the backend holds no other state.
    public static let shared = CPUBackend()

    /// The element pointer of a tensor this backend owns.
    func elements(_ t: Tensor) -> UnsafeMutablePointer<Float> {
        // Safe: every op validated ownership (`requireOwned`) before it reaches here.
        unsafeDowncast(t.storage, to: CPUStorage.self).pointer
    }

    public func zeros(_ shape: [Int]) throws -> Tensor {
        let t = try empty(shape)
        elements(t).initialize(repeating: 0, count: t.count)
        return t
    }

    /// Recycled memory: whatever the last tensor there held (every op that takes an output writes all of it).
    public func empty(_ shape: [Int]) throws -> Tensor {
        try Tensor.validate(shape: shape)
        return try Tensor(shape: shape, storage: CPUStorage(count: shape.reduce(1, *), pool: memory), backend: self)
    }

    /// Bytes the host pool holds for reuse (freed tensors' buffers; shared by every CPU backend).
    public var cachedMemoryBytes: Int { memory.cachedBytes }

    /// Returns the host pool's cached buffers to the system (live tensors keep theirs).
    public func releaseCachedMemory() { memory.trim() }

    public func upload(_ values: [Float], shape: [Int]) throws -> Tensor {
        try validateUpload(values, shape: shape)
        let t = try empty(shape)
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
