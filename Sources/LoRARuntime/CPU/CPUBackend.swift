// The CPU backend: pure Swift, no BLAS. It is the specification and the test oracle for every other backend,
// and the fallback wherever no OpenCL device exists. Inner loops run on raw pointers, never Array subscripts.

import Foundation

/// Host memory for a CPU tensor: 64-byte aligned, from the host pool, contents unspecified until written. The memory
/// is bound to the dtype's element type (Float, UInt16 for both 16-bit floats, Int32, UInt8).
public final class CPUStorage: TensorStorage, @unchecked Sendable {
    public let byteCount: Int
    /// The first byte. Mutated only through backend ops.
    public let raw: UnsafeMutableRawPointer
    /// The elements of a float32 tensor (the binding of every other dtype's memory differs: use `raw`).
    public var pointer: UnsafeMutablePointer<Float> { raw.assumingMemoryBound(to: Float.self) }
    private let pool: HostMemoryPool

    init(count: Int, dtype: DType, pool: HostMemoryPool) throws {
        let (raw, bytes) = try pool.allocate(bytes: count * dtype.size)
        (byteCount, self.pool, self.raw) = (bytes, pool, raw)
        switch dtype {
        case .float32: raw.bindMemory(to: Float.self, capacity: bytes / 4)
        case .bfloat16, .float16: raw.bindMemory(to: UInt16.self, capacity: bytes / 2)
        case .int32: raw.bindMemory(to: Int32.self, capacity: bytes / 4)
        case .uint8: raw.bindMemory(to: UInt8.self, capacity: bytes)
        }
    }

    deinit { pool.recycle(raw, byteCount: byteCount) }
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
    public let memory: HostMemoryPool

    /// - Parameters:
    ///   - pool: the threads ops split their work over.
    ///   - memory: the host pool tensors allocate from; a private pool keeps one backend's cached buffers (and their
    ///     cap) apart from every other's.
    public init(pool: ThreadPool = .shared, memory: HostMemoryPool = .shared) { (self.pool, self.memory) = (pool, memory) }

    /// A shared instance on the shared pool; the backend holds no other state.
    public static let shared = CPUBackend()

    /// The element pointer of a float32 tensor this backend owns.
    func elements(_ t: Tensor) -> UnsafeMutablePointer<Float> {
        // Safe: every op validated ownership (`requireOwned`) and dtypes before it reaches here; the check guards
        // against an op that forgot the latter reading 16-bit storage as floats (past its end).
        precondition(t.dtype == .float32, "a \(t.dtype) tensor reached a float32 CPU kernel: \(t)")
        return unsafeDowncast(t.storage, to: CPUStorage.self).pointer
    }

    /// The first byte of a tensor this backend owns, any dtype.
    func bytes(_ t: Tensor) -> UnsafeMutableRawPointer { unsafeDowncast(t.storage, to: CPUStorage.self).raw }

    /// The elements of an int32 tensor this backend owns.
    func int32s(_ t: Tensor) -> UnsafeMutablePointer<Int32> {
        precondition(t.dtype == .int32, "a \(t.dtype) tensor reached an int32 CPU kernel: \(t)")
        return bytes(t).assumingMemoryBound(to: Int32.self)
    }

    public func zeros(_ shape: [Int], dtype: DType) throws -> Tensor {
        let t = try empty(shape, dtype: dtype)
        bytes(t).initializeMemory(as: UInt8.self, repeating: 0, count: t.byteCount)
        if dtype != .uint8 { rebind(t) }
        return t
    }

    /// Recycled memory: whatever the last tensor there held (every op that takes an output writes all of it).
    /// Throws `LoRAError.outOfMemory` when the system refuses the allocation.
    public func empty(_ shape: [Int], dtype: DType) throws -> Tensor {
        try Tensor.validate(shape: shape)
        return try Tensor(shape: shape, dtype: dtype,
                          storage: CPUStorage(count: shape.reduce(1, *), dtype: dtype, pool: memory), backend: self)
    }

    /// Binds a tensor's memory back to its element type after it was written as bytes.
    private func rebind(_ t: Tensor) {
        let storage = unsafeDowncast(t.storage, to: CPUStorage.self)
        switch t.dtype {
        case .float32: storage.raw.bindMemory(to: Float.self, capacity: storage.byteCount / 4)
        case .bfloat16, .float16: storage.raw.bindMemory(to: UInt16.self, capacity: storage.byteCount / 2)
        case .int32: storage.raw.bindMemory(to: Int32.self, capacity: storage.byteCount / 4)
        case .uint8: storage.raw.bindMemory(to: UInt8.self, capacity: storage.byteCount)
        }
    }

    /// Bytes the host pool holds for reuse (freed tensors' buffers; shared by every CPU backend on the same pool).
    public var cachedMemoryBytes: Int { memory.cachedBytes }

    /// Returns the host pool's cached buffers to the system (live tensors keep theirs).
    public func releaseCachedMemory() { memory.trim() }

    public func upload(_ values: [Float], shape: [Int]) throws -> Tensor {
        try validateUpload(values, shape: shape)
        let t = try empty(shape)
        values.withUnsafeBufferPointer { elements(t).update(from: $0.baseAddress!, count: values.count) }
        return t
    }

    public func upload(bytes source: UnsafeRawBufferPointer, dtype: DType, shape: [Int]) throws -> Tensor {
        try validateUpload(bytes: source, dtype: dtype, shape: shape)
        let t = try empty(shape, dtype: dtype)
        bytes(t).copyMemory(from: source.baseAddress!, byteCount: source.count)
        rebind(t)
        return t
    }

    public func download(_ tensor: Tensor) throws -> [Float] {
        try requireOwned("download", tensor)
        try tensor.requireDType([.float32], op: "download", operand: "the tensor")
        return Array(UnsafeBufferPointer(start: elements(tensor), count: tensor.count))
    }

    public func downloadBytes(_ tensor: Tensor, into destination: UnsafeMutableRawBufferPointer) throws {
        try validateDownload(tensor, into: destination)
        destination.baseAddress?.copyMemory(from: bytes(tensor), byteCount: tensor.byteCount)
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
