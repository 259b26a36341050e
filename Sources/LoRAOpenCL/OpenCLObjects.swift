// Owning wrappers for OpenCL handles. Every handle is an OpaquePointer in Swift, so the compiler cannot tell a
// cl_mem from a cl_kernel; a phantom `Kind` gives each its own type, and `deinit` releases the handle once.

import LoRARuntime

enum ContextKind {}
enum QueueKind {}
enum ProgramKind {}
enum KernelKind {}
enum EventKind {}

/// An OpenCL object that is released when the last Swift reference goes away.
final class CLObject<Kind>: @unchecked Sendable {
    let handle: CLHandle
    private let release: CLFunction.Release

    init(_ handle: CLHandle, release: @escaping CLFunction.Release) {
        self.handle = handle
        self.release = release
    }

    deinit { _ = release(handle) }
}

typealias CLContext = CLObject<ContextKind>
typealias CLQueue = CLObject<QueueKind>
typealias CLProgram = CLObject<ProgramKind>
typealias CLKernel = CLObject<KernelKind>
typealias CLEvent = CLObject<EventKind>

/// Where a buffer's memory lies.
enum BufferPlacement {
    /// Device memory, from the pool's cache.
    case device
    /// Host memory the device reaches over the bus (`CL_MEM_ALLOC_HOST_PTR`), never cached.
    case host
}

/// A cl_mem behind a tensor. A device buffer goes back to its pool (not to the driver) when the tensor is gone;
/// a host-resident one goes back to the driver.
final class CLBufferStorage: TensorStorage, @unchecked Sendable {
    let handle: CLHandle
    let byteCount: Int
    let placement: BufferPlacement
    private let pool: BufferPool

    init(handle: CLHandle, byteCount: Int, pool: BufferPool, placement: BufferPlacement) {
        (self.handle, self.byteCount, self.pool, self.placement) = (handle, byteCount, pool, placement)
    }

    deinit {
        switch placement {
        case .device: pool.recycle(handle, byteCount: byteCount)
        case .host: pool.release(handle)
        }
    }
}
