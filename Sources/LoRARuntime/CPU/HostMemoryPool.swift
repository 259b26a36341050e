// A caching allocator for host tensors. A training step frees and re-allocates the same shapes every step; fresh
// large allocations come from mmap, so each one page-faults and the kernel zeroes every page (with the memset of a
// zeroed tensor, 9% of a small model's step). Freed buffers are kept by size class and handed out again.
import Foundation

/// Host buffers, 64-byte aligned, recycled by size class up to a cap.
public final class HostMemoryPool: @unchecked Sendable {
    /// The pool every CPU tensor allocates from; `LORA_HOST_POOL_MB` sets its cap (default 512).
    public static let shared = HostMemoryPool(limit: (ProcessInfo.processInfo.environment["LORA_HOST_POOL_MB"].flatMap(Int.init) ?? 512) << 20)

    /// At most this many bytes stay cached; a buffer freed beyond it goes back to the system.
    public let limit: Int
    private let lock = NSLock()
    private var cached: [Int: [UnsafeMutableRawPointer]] = [:]
    /// Bytes held for reuse.
    public private(set) var cachedBytes = 0

    public init(limit: Int) { self.limit = limit }

    deinit { trim() }

    /// The size class of a request: a multiple of 256 bytes and of 1/8 of the largest power of two not above it,
    /// so a class is never more than 1/8 (or 255 bytes) above the request. Device pools use the same classes.
    public static func sizeClass(_ bytes: Int) -> Int {
        let floorPower = 1 << (Int.bitWidth - 1 - max(bytes, 1).leadingZeroBitCount)
        let granule = max(256, floorPower / 8)
        return (bytes + granule - 1) / granule * granule
    }

    /// A buffer of `sizeClass(bytes)` bytes, contents unspecified. When the system refuses, the cached buffers are
    /// returned to it and the allocation is tried once more (as the OpenCL pool does); then it throws
    /// `LoRAError.outOfMemory`.
    func allocate(bytes: Int) throws -> (pointer: UnsafeMutableRawPointer, byteCount: Int) {
        precondition(bytes >= 0, "host allocation of \(bytes) bytes")
        // No address space has room for this, and rounding it to a size class would overflow.
        guard bytes <= Int.max / 2 else { throw LoRAError.outOfMemory(bytes: bytes, device: "host") }
        let size = HostMemoryPool.sizeClass(bytes)
        let reused = lock.withLock { () -> UnsafeMutableRawPointer? in
            guard let p = cached[size]?.popLast() else { return nil }
            cachedBytes -= size
            return p
        }
        if let reused { return (reused, size) }
        if let p = HostMemoryPool.fresh(size) { return (p, size) }
        trim()
        guard let p = HostMemoryPool.fresh(size) else { throw LoRAError.outOfMemory(bytes: size, device: "host") }
        return (p, size)
    }

    /// From this size on, buffers are aligned to 2 MiB and marked for transparent huge pages: a GEMM that walks a
    /// large matrix's rows (an LM head's logits rows are 200 KB apart) touches a new 4 KiB page per row, and the TLB
    /// misses cost more than the arithmetic (Linux backs such memory with huge pages only when asked, by default).
    static let hugePageThreshold = 4 << 20

    /// Fresh memory from the system, nil when it refuses. Every size goes through posix_memalign (and so back
    /// through free): `UnsafeMutableRawPointer.allocate` traps instead of reporting a refusal.
    private static func fresh(_ size: Int) -> UnsafeMutableRawPointer? {
        var raw: UnsafeMutableRawPointer?
        let alignment = size >= hugePageThreshold ? 2 << 20 : 64
        guard posix_memalign(&raw, alignment, max(size, 1)) == 0, let raw else { return nil }
        if size >= hugePageThreshold { _ = madvise(raw, size, MADV_HUGEPAGE) }
        return raw
    }

    private static func release(_ pointer: UnsafeMutableRawPointer) { free(pointer) }

    /// Takes back a buffer `allocate` gave out.
    func recycle(_ pointer: UnsafeMutableRawPointer, byteCount: Int) {
        let kept = lock.withLock { () -> Bool in
            guard cachedBytes + byteCount <= limit else { return false }
            cached[byteCount, default: []].append(pointer)
            cachedBytes += byteCount
            return true
        }
        if !kept { HostMemoryPool.release(pointer) }
    }

    /// Returns every cached buffer to the system (live tensors keep theirs).
    public func trim() {
        let buffers = lock.withLock { () -> [UnsafeMutableRawPointer] in
            defer { cached = [:]; cachedBytes = 0 }
            return cached.values.flatMap { $0 }
        }
        for p in buffers { HostMemoryPool.release(p) }
    }
}
