// A caching allocator for host tensors. A training step frees and re-allocates the same shapes every step; fresh
// large allocations come from mmap, so each one page-faults and the kernel zeroes every page (with the memset of a
// zeroed tensor, 9% of a small model's step). Freed buffers are kept by size class and handed out again.
import Foundation

/// Host buffers, 64-byte aligned, recycled by size class up to a cap.
public final class HostMemoryPool: @unchecked Sendable {
    /// The pool every CPU tensor allocates from.
    public static let shared = HostMemoryPool(limit: 512 << 20)

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

    /// A buffer of `sizeClass(bytes)` bytes, contents unspecified.
    func allocate(bytes: Int) -> (pointer: UnsafeMutableRawPointer, byteCount: Int) {
        let size = HostMemoryPool.sizeClass(bytes)
        let reused = lock.withLock { () -> UnsafeMutableRawPointer? in
            guard let p = cached[size]?.popLast() else { return nil }
            cachedBytes -= size
            return p
        }
        return (reused ?? HostMemoryPool.fresh(size), size)
    }

    /// From this size on, buffers are aligned to 2 MiB and marked for transparent huge pages: a GEMM that walks a
    /// large matrix's rows (an LM head's logits rows are 200 KB apart) touches a new 4 KiB page per row, and the TLB
    /// misses cost more than the arithmetic (Linux backs such memory with huge pages only when asked, by default).
    static let hugePageThreshold = 4 << 20

    private static func fresh(_ size: Int) -> UnsafeMutableRawPointer {
        guard size >= hugePageThreshold else { return UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 64) }
        var raw: UnsafeMutableRawPointer?
        guard posix_memalign(&raw, 2 << 20, size) == 0, let raw else { fatalError("out of host memory (\(size) bytes)") }
        _ = madvise(raw, size, MADV_HUGEPAGE)
        return raw
    }

    private static func release(_ pointer: UnsafeMutableRawPointer, size: Int) {
        if size >= hugePageThreshold { free(pointer) } else { pointer.deallocate() }
    }

    /// Takes back a buffer `allocate` gave out.
    func recycle(_ pointer: UnsafeMutableRawPointer, byteCount: Int) {
        let kept = lock.withLock { () -> Bool in
            guard cachedBytes + byteCount <= limit else { return false }
            cached[byteCount, default: []].append(pointer)
            cachedBytes += byteCount
            return true
        }
        if !kept { HostMemoryPool.release(pointer, size: byteCount) }
    }

    /// Returns every cached buffer to the system (live tensors keep theirs).
    public func trim() {
        let buffers = lock.withLock { () -> [(Int, UnsafeMutableRawPointer)] in
            defer { cached = [:]; cachedBytes = 0 }
            return cached.flatMap { size, pointers in pointers.map { (size, $0) } }
        }
        for (size, p) in buffers { HostMemoryPool.release(p, size: size) }
    }
}
