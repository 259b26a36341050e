// Host-resident tensors and copies that may overlap compute: what a paged optimizer needs to keep its state in
// host memory and stream it through the device one tensor at a time. A device whose memory is the host's (the
// CPU) gets the defaults here: ordinary tensors and in-order copies. OpenCL overrides all four
// (OpenCLBackend+HostMemory.swift: CL_MEM_ALLOC_HOST_PTR buffers, copies on a second queue with events).

/// Copies started by `Backend.beginTransfer`, in flight until `Backend.awaitTransfer`.
///
/// It keeps the tensors alive while the device may still read or write them, and carries the backend's handle on
/// the copies (an OpenCL event), or nil where they already ran in order.
public final class Transfer {
    /// The copies, held so that no tensor's memory is reused while they run.
    public let copies: [(source: Tensor, destination: Tensor)]
    /// The backend's own record of the copies in flight; nil when they ran in order with every other op.
    public let token: AnyObject?

    public init(copies: [(source: Tensor, destination: Tensor)], token: AnyObject?) {
        (self.copies, self.token) = (copies, token)
    }
}

extension Backend {
    /// A device with no memory of its own: host memory is device memory.
    public var hostMemoryIsDeviceMemory: Bool { true }

    /// An ordinary tensor: on a device that computes in host memory every tensor is host-resident.
    public func hostResidentZeros(_ shape: [Int]) throws -> Tensor { try zeros(shape) }

    /// Ordinary copies, run in order with every other op; the transfer is already complete.
    public func beginTransfer(_ copies: [(source: Tensor, destination: Tensor)]) throws -> Transfer {
        for (source, destination) in copies { try copy(source, to: destination) }
        return Transfer(copies: [], token: nil)
    }

    /// Nothing to wait for: `beginTransfer`'s default copies ran in order.
    public func awaitTransfer(_ transfer: Transfer) throws {}
}
