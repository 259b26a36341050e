// A ProcessGroup of threads in one process: what the data-parallel trainer's tests run N ranks on without MPI.
// Collectives meet at a barrier; a sum adds the ranks' buffers in rank order, so every rank gets the same bits.
import Foundation
import SwiftLoRA

/// N ranks as threads; `run` starts them and collects each one's result.
public final class ThreadGroup: @unchecked Sendable {
    public let size: Int
    private let condition = NSCondition()
    private var arrived = 0, generation = 0
    private var slots: [[UInt8]]

    init(size: Int) { (self.size, slots) = (size, Array(repeating: [], count: size)) }

    /// Runs `body` as ranks 0 ..< size on their own threads; returns each rank's result (or error) in rank order.
    public static func run<T>(size: Int, _ body: @escaping @Sendable (ThreadGroupMember) throws -> T) -> [Result<T, Error>] {
        let group = ThreadGroup(size: size)
        let results = Results<T>(size: size)
        let done = DispatchSemaphore(value: 0)
        for rank in 0..<size {
            let thread = Thread {
                results.set(rank, Result { try body(ThreadGroupMember(group: group, rank: rank)) })
                done.signal()
            }
            thread.stackSize = 8 << 20
            thread.start()
        }
        for _ in 0..<size { done.wait() }
        return results.values.map { $0! }
    }

    func barrier() {
        condition.lock()
        let current = generation
        arrived += 1
        if arrived == size {
            (arrived, generation) = (0, generation + 1)
            condition.broadcast()
        } else {
            while current == generation { condition.wait() }
        }
        condition.unlock()
    }

    /// Deposits `bytes` as `rank`'s, waits for every rank's, returns them all in rank order; a second barrier keeps a
    /// fast rank's next collective from overwriting a slot another is still reading.
    func exchange(_ bytes: [UInt8], rank: Int) -> [[UInt8]] {
        condition.lock(); slots[rank] = bytes; condition.unlock()
        barrier()
        condition.lock(); let all = slots; condition.unlock()
        barrier()
        return all
    }
}

private final class Results<T>: @unchecked Sendable {
    private let lock = NSLock()
    private(set) var values: [Result<T, Error>?]
    init(size: Int) { values = Array(repeating: nil, count: size) }
    func set(_ rank: Int, _ value: Result<T, Error>) { lock.withLock { values[rank] = value } }
}

/// One rank of a `ThreadGroup`.
public final class ThreadGroupMember: ProcessGroup, @unchecked Sendable {
    let group: ThreadGroup
    public let rank: Int
    public var size: Int { group.size }

    init(group: ThreadGroup, rank: Int) { (self.group, self.rank) = (group, rank) }

    private func sum<F: BinaryFloatingPoint>(_ values: UnsafeMutableBufferPointer<F>) {
        let all = group.exchange(Array(UnsafeRawBufferPointer(values)), rank: rank)
        for i in values.indices { values[i] = 0 }
        for bytes in all {
            bytes.withUnsafeBytes { raw in
                let other = raw.bindMemory(to: F.self)
                for i in values.indices { values[i] += other[i] }
            }
        }
    }

    public func allReduceSum(_ values: UnsafeMutableBufferPointer<Float>) throws { sum(values) }
    public func allReduceSum(_ values: UnsafeMutableBufferPointer<Double>) throws { sum(values) }

    public func broadcast(_ bytes: UnsafeMutableRawBufferPointer, root: Int) throws {
        let all = group.exchange(Array(UnsafeRawBufferPointer(bytes)), rank: rank)
        all[root].withUnsafeBytes { bytes.copyMemory(from: $0) }
    }

    public func allGather(_ bytes: UnsafeRawBufferPointer, into: UnsafeMutableRawBufferPointer) throws {
        let all = group.exchange(Array(bytes), rank: rank)
        for (r, block) in all.enumerated() {
            block.withUnsafeBytes { UnsafeMutableRawBufferPointer(rebasing: into[(r * bytes.count)..<((r + 1) * bytes.count)]).copyMemory(from: $0) }
        }
    }
}
