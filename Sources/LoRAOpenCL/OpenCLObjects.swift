// Owning wrappers for OpenCL handles. Every handle is an OpaquePointer in Swift, so the compiler cannot tell a
// cl_mem from a cl_kernel; a phantom `Kind` gives each its own type, and `deinit` releases the handle once.

import LoRARuntime

enum ContextKind {}
enum QueueKind {}
enum ProgramKind {}
enum KernelKind {}

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

/// A cl_mem behind a tensor. It goes back to its pool (not to the driver) when the tensor is gone.
final class CLBufferStorage: TensorStorage, @unchecked Sendable {
    let handle: CLHandle
    let byteCount: Int
    private let pool: BufferPool

    init(handle: CLHandle, byteCount: Int, pool: BufferPool) {
        (self.handle, self.byteCount, self.pool) = (handle, byteCount, pool)
    }

    deinit { pool.recycle(handle, byteCount: byteCount) }
}
