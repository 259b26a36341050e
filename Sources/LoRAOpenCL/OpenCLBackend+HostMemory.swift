// Host-resident tensors and overlapped copies on OpenCL: buffers made with CL_MEM_ALLOC_HOST_PTR (pinned host
// memory the device reads over the bus; every op and copy takes them like any other buffer), and
// `beginTransfer`'s copies on the backend's second in-order queue. The fences, per transfer:
//
//     compute queue:   ...ops before... [marker M] ...ops after (may overlap)... [barrier on E] ...ops that use it
//     transfer queue:                    wait M → copy → copy → E
//
// Fine-grained SVM (OpenCL 2.0) is not used: it would need clSVMAlloc and a second way of passing every kernel
// argument, and here kernels only ever see the device staging buffers, never the host-resident ones.
import Foundation
import LoRARuntime

extension OpenCLBackend {
    /// Device memory is the device's own, even on a CPU driver such as PoCL: keeping state there is what
    /// `hostResidentZeros` avoids.
    public var hostMemoryIsDeviceMemory: Bool { false }

    /// A CL_MEM_ALLOC_HOST_PTR buffer of exactly the tensor's bytes, cleared on the queue.
    public func hostResidentZeros(_ shape: [Int]) throws -> Tensor {
        try Tensor.validate(shape: shape)
        let bytes = shape.reduce(1, *) * DType.float32.size
        guard bytes <= device.maxAllocationBytes else {
            throw OpenCLError.outOfMemory(bytes: bytes, device: "\(device.name) (largest allocation \(device.maxAllocationBytes) bytes)")
        }
        let t = try Tensor(shape: shape, storage: pool.allocateHostResident(bytes: bytes), backend: self)
        var zero: UInt8 = 0
        try api.check(api.enqueueFillBuffer(queue.handle, buffer(t), &zero, 1, 0, t.byteCount, 0, nil, nil), "clEnqueueFillBuffer")
        return t
    }

    /// Whether a tensor's memory is host-resident (made by `hostResidentZeros`).
    public func isHostResident(_ t: Tensor) -> Bool {
        (t.storage as? CLBufferStorage)?.placement == .host
    }

    /// The copies on the transfer queue, after a marker of everything enqueued on the compute queue so far.
    public func beginTransfer(_ copies: [(source: Tensor, destination: Tensor)]) throws -> Transfer {
        for (source, destination) in copies { try validateCopy(source, destination) }
        let moving = copies.filter { $0.source.storage !== $0.destination.storage }
        guard !moving.isEmpty else { return Transfer(copies: [], token: nil) }
        return try lock.withLock {
            var marker: CLHandle?
            try api.check(api.enqueueMarkerWithWaitList(queue.handle, 0, nil, &marker), "clEnqueueMarkerWithWaitList")
            let start = CLEvent(marker!, release: api.releaseEvent)
            let waitList = UnsafeMutablePointer<CLHandle?>.allocate(capacity: 1)
            defer { waitList.deallocate() }
            waitList.initialize(to: start.handle)
            var last: CLHandle?
            for (index, (source, destination)) in moving.enumerated() {
                // The queue is in order: only the first copy waits for the marker, only the last one's event is kept.
                let (waits, isLast) = (index == 0, index == moving.count - 1)
                let (src, dst) = (buffer(source), buffer(destination))
                let status = isLast
                    ? api.enqueueCopyBuffer(transferQueue.handle, src, dst, 0, 0, source.byteCount, waits ? 1 : 0,
                                            waits ? waitList : nil, &last)
                    : api.enqueueCopyBuffer(transferQueue.handle, src, dst, 0, 0, source.byteCount, waits ? 1 : 0,
                                            waits ? waitList : nil, nil)
                try api.check(status, "clEnqueueCopyBuffer")
            }
            let fence = TransferFence(event: CLEvent(last!, release: api.releaseEvent), backend: self, copies: moving)
            // Each queue must be flushed for a command on the other to see its events complete (OpenCL 1.2 §5.13).
            try api.check(api.flush(queue.handle), "clFlush")
            try api.check(api.flush(transferQueue.handle), "clFlush")
            return Transfer(copies: moving, token: fence)
        }
    }

    /// A barrier on the compute queue that waits for the transfer's last copy.
    public func awaitTransfer(_ transfer: Transfer) throws {
        guard let token = transfer.token else { return }
        guard let fence = token as? TransferFence, fence.backend === self else {
            throw LoRAError.wrongDevice("awaitTransfer: a transfer begun on another device was awaited on \(name)")
        }
        try fence.enqueueBarrier()
    }

    /// Makes the compute queue wait for `event` before its later commands.
    func enqueueBarrier(waitingFor event: CLEvent) throws {
        try lock.withLock {
            var wait: CLHandle? = event.handle
            try api.check(api.enqueueBarrierWithWaitList(queue.handle, 1, &wait, nil), "clEnqueueBarrierWithWaitList")
        }
    }
}

/// The event of a transfer's last copy. If the transfer is dropped unawaited, the compute queue is still fenced
/// against it before its tensors are let go, so that no pooled buffer it touches is handed to a later kernel
/// while the copy runs.
final class TransferFence {
    let event: CLEvent
    let backend: OpenCLBackend
    /// The copies' tensors, released only after this fence's deinit has fenced the compute queue.
    private let copies: [(source: Tensor, destination: Tensor)]
    private var awaited = false

    init(event: CLEvent, backend: OpenCLBackend, copies: [(source: Tensor, destination: Tensor)]) {
        (self.event, self.backend, self.copies) = (event, backend, copies)
    }

    func enqueueBarrier() throws {
        try backend.enqueueBarrier(waitingFor: event)
        awaited = true
    }

    deinit { if !awaited { try? backend.enqueueBarrier(waitingFor: event) } }
}
