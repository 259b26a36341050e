// A caching allocator for device buffers. Sizes are rounded up to a size class (at most 1/8 above the
// request), so a training step that frees and re-allocates the same shapes reuses buffers instead of
// asking the driver each time. When the driver refuses an allocation the cached buffers are released and the
// allocation is tried once more. Host-resident buffers (CL_MEM_ALLOC_HOST_PTR, exact size) are made here too but
// never cached: they are few, long-lived, and go straight back to the driver.
import Foundation
import LoRARuntime

final class BufferPool: @unchecked Sendable {
    private let api: OpenCLAPI
    private let context: CLContext
    private let deviceName: String
    private let lock = NSLock()
    private var free: [Int: [CLHandle]] = [:]
    /// Bytes held in `free`.
    private(set) var cachedBytes = 0

    init(api: OpenCLAPI, context: CLContext, deviceName: String) {
        (self.api, self.context, self.deviceName) = (api, context, deviceName)
    }

    deinit { trim() }

    /// The host pool's size classes (at most 1/8 above the request).
    static func sizeClass(_ bytes: Int) -> Int { HostMemoryPool.sizeClass(bytes) }

    /// A buffer of at least `bytes` bytes.
    func allocate(bytes: Int) throws -> CLBufferStorage {
        let size = BufferPool.sizeClass(bytes)
        if let handle = lock.withLock({ () -> CLHandle? in
            guard let h = free[size]?.popLast() else { return nil }
            cachedBytes -= size
            return h
        }) {
            return CLBufferStorage(handle: handle, byteCount: size, pool: self, placement: .device)
        }
        return CLBufferStorage(handle: try createRetrying(size, flags: CL.MEM_READ_WRITE), byteCount: size, pool: self,
                               placement: .device)
    }

    /// A buffer of exactly `bytes` bytes in host memory the device reaches over the bus (`CL_MEM_ALLOC_HOST_PTR`:
    /// pinned, mappable), released to the driver when its tensor is gone.
    func allocateHostResident(bytes: Int) throws -> CLBufferStorage {
        CLBufferStorage(handle: try createRetrying(bytes, flags: CL.MEM_READ_WRITE | CL.MEM_ALLOC_HOST_PTR),
                        byteCount: bytes, pool: self, placement: .host)
    }

    /// A new buffer; when the driver is out of memory, once more after releasing the cached buffers.
    private func createRetrying(_ size: Int, flags: UInt64) throws -> CLHandle {
        do {
            return try create(size, flags: flags)
        } catch let error as OpenCLError where error.isAllocationFailure {
            trim()
            do { return try create(size, flags: flags) } catch let e as OpenCLError
                where e.isAllocationFailure { throw OpenCLError.outOfMemory(bytes: size, device: deviceName) }
        }
    }

    /// Gives a host-resident buffer back to the driver (which defers it until queued commands using it are done).
    func release(_ handle: CLHandle) { _ = api.releaseMemObject(handle) }

    func recycle(_ handle: CLHandle, byteCount: Int) {
        lock.withLock {
            free[byteCount, default: []].append(handle)
            cachedBytes += byteCount
        }
    }

    /// Releases every cached buffer back to the driver.
    func trim() {
        let handles = lock.withLock { () -> [CLHandle] in
            defer { free = [:]; cachedBytes = 0 }
            return free.values.flatMap { $0 }
        }
        for h in handles { _ = api.releaseMemObject(h) }
    }

    private func create(_ size: Int, flags: UInt64) throws -> CLHandle {
        var status: Int32 = 0
        let handle = api.createBuffer(context.handle, flags, size, nil, &status)
        try api.check(status, "clCreateBuffer(\(size) bytes)")
        guard let handle else { throw OpenCLError.status(status, call: "clCreateBuffer") }
        return handle
    }
}

extension OpenCLError {
    /// Statuses a driver uses for "no memory left".
    var isAllocationFailure: Bool {
        guard case .status(let code, _) = self else { return false }
        return code == -4 || code == -5 || code == -6 || code == -61
    }
}
