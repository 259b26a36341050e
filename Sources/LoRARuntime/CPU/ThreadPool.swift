// The CPU backend's worker threads: persistent, spin briefly, then park.
//
// Why not DispatchQueue.concurrentPerform: for jobs of a millisecond or less it often runs every part on one
// thread, halving a 2-core machine. Why not pure spinning: when the host is busy a spinning worker steals the
// core the caller needs. So a worker spins for a few tens of microseconds after each job (the next op usually
// arrives within that) and then sleeps on a condition variable.
import Foundation
import Synchronization

/// A fixed set of threads that run one data-parallel job at a time.
///
/// `run(parts:)` calls `body(i)` for each `i` in `0..<parts`, part 0 on the calling thread, and returns when all
/// have finished. Which thread runs a part never changes what a part computes, so results do not depend on
/// the thread count as long as callers split work by the data, not by the threads.
public final class ThreadPool: @unchecked Sendable {
    /// Threads that run parts, the caller included (`LORA_THREADS`, default: all cores).
    public let threadCount: Int

    /// Shared by every CPU op.
    public static let shared = ThreadPool(threadCount: ThreadPool.configuredThreads())

    /// `(job number << 16) | workers wanted`, published with release ordering once the job is in place.
    /// One word, so a worker that wakes late can never pair one job's number with another's worker count.
    private let state = Atomic<Int>(0)
    /// Workers of the current job that have not finished.
    private let pending = Atomic<Int>(0)
    /// The next part to hand out.
    private let nextPart = Atomic<Int>(0)
    /// The current job; written before `state` is published, read after it is seen.
    private nonisolated(unsafe) var body: (@Sendable (Int) -> Void)?
    private nonisolated(unsafe) var parts = 0
    /// Workers park here once spinning has gone on long enough.
    private let parking = NSCondition()
    /// One job at a time; a caller that finds the pool busy runs its parts itself.
    private let busy = NSLock()

    /// Spin iterations before a worker parks (a few tens of microseconds).
    private static let spinLimit = 20_000

    /// Starts `threadCount − 1` workers. They hold the pool, so a pool lives as long as the process: make one
    /// per configuration (tests make a few), not one per op.
    public init(threadCount: Int) {
        self.threadCount = max(1, min(threadCount, 0xFFFF))
        for index in 1..<self.threadCount {
            // Strong on purpose: a worker parked on `parking` must never outlive the pool it reads.
            let thread = Thread { self.workerLoop(index: index) }
            thread.name = "lora-cpu-\(index)"
            thread.stackSize = 1 << 20
            thread.start()
        }
    }

    /// `LORA_THREADS` when it is a positive integer, else the number of active cores.
    public static func configuredThreads() -> Int {
        if let text = ProcessInfo.processInfo.environment["LORA_THREADS"], let n = Int(text), n > 0 { return n }
        return ProcessInfo.processInfo.activeProcessorCount
    }

    /// Runs `body(0) … body(parts − 1)` across the pool and returns when all are done. Parts are handed out
    /// in order to whichever thread is free, so `parts` may exceed `threadCount`.
    /// From inside a part, or while another thread's job holds the pool, the parts run on the caller in order.
    ///
    /// `body` runs concurrently with itself: each part must write only its own memory. It is not required to
    /// be `@Sendable` because the ops hand it raw pointers into tensors, which is exactly that contract.
    public func run(parts: Int, _ body: (Int) -> Void) {
        guard parts > 1, threadCount > 1, !insideJob.value, busy.try() else {
            for part in 0..<parts { body(part) }
            return
        }
        defer { busy.unlock() }
        withoutActuallyEscaping(body) { body in
            // Safe: `run` does not return before every part has finished, and the caller vouches for the parts.
            publish(unsafeBitCast(body, to: (@Sendable (Int) -> Void).self), parts: parts)
        }
    }

    private func publish(_ body: @escaping @Sendable (Int) -> Void, parts: Int) {
        let workers = min(parts, threadCount) - 1
        self.body = body
        self.parts = parts
        nextPart.store(0, ordering: .relaxed)
        pending.store(workers, ordering: .relaxed)
        parking.lock()
        let job = (state.load(ordering: .relaxed) >> 16) + 1
        state.store(job << 16 | workers, ordering: .releasing)
        parking.broadcast()
        parking.unlock()
        insideJob.value = true
        claimParts()
        insideJob.value = false
        var spins = 0
        while pending.load(ordering: .acquiring) > 0 {
            spins += 1
            if spins > Self.spinLimit { sched_yield() }
        }
        self.body = nil
    }

    private func claimParts() {
        guard let body else { return }
        while true {
            let part = nextPart.wrappingAdd(1, ordering: .relaxed).oldValue
            if part >= parts { return }
            body(part)
        }
    }

    /// Set while a thread runs parts: an op called from inside a part runs inline instead of deadlocking.
    private let insideJob = ThreadLocalFlag()

    private func workerLoop(index: Int) {
        insideJob.value = true
        var seen = 0
        while true {
            var current = state.load(ordering: .acquiring)
            var spins = 0
            while current >> 16 == seen >> 16 {
                spins += 1
                if spins > Self.spinLimit {
                    parking.lock()
                    while state.load(ordering: .acquiring) >> 16 == seen >> 16 { parking.wait() }
                    parking.unlock()
                }
                current = state.load(ordering: .acquiring)
            }
            seen = current
            // The caller waits for every wanted worker, so `body` stays in place until this one is done.
            if index <= current & 0xFFFF {
                claimParts()
                pending.wrappingSubtract(1, ordering: .releasing)
            }
        }
    }
}

/// A per-thread Boolean (pthread key), false on every thread until set.
private final class ThreadLocalFlag: @unchecked Sendable {
    private var key = pthread_key_t()
    init() { pthread_key_create(&key, nil) }
    var value: Bool {
        get { pthread_getspecific(key) != nil }
        set { pthread_setspecific(key, newValue ? UnsafeRawPointer(bitPattern: 1) : nil) }
    }
}

/// Scratch buffers per thread, kept for the thread's life and grown on demand: ops that pack or stage data
/// reuse them instead of allocating (and page-faulting) on every call. A buffer stays valid until the same
/// thread asks for the same slot again.
enum ThreadScratch {
    /// Slots: `.shared` for data a whole op shares (packed B), `.sharedA` for an A block all parts share,
    /// `.part` for one part's own work (its packed A), `.scores` for one attention head's score gradients, `.rows`
    /// for rows an op stages around its GEMMs (multi-LoRA's gathered rows of one adapter).
    enum Slot { case shared, sharedA, part, scores, rows }

    private static let keys = (makeKey(), makeKey(), makeKey(), makeKey(), makeKey())

    private static func makeKey() -> pthread_key_t {
        var key = pthread_key_t()
        pthread_key_create(&key) { raw in
            guard let buffer = raw?.assumingMemoryBound(to: Header.self) else { return }
            buffer.pointee.floats.deallocate()
            buffer.deallocate()
        }
        return key
    }

    private struct Header { var floats: UnsafeMutablePointer<Float>; var capacity: Int }

    /// At least `floats` floats, 64-byte aligned, contents unspecified.
    static func current(_ slot: Slot, floats: Int) -> UnsafeMutablePointer<Float> {
        let key = switch slot {
        case .shared: keys.0
        case .sharedA: keys.1
        case .part: keys.2
        case .scores: keys.3
        case .rows: keys.4
        }
        if let raw = pthread_getspecific(key) {
            let header = raw.assumingMemoryBound(to: Header.self)
            if header.pointee.capacity >= floats { return header.pointee.floats }
            header.pointee.floats.deallocate()
            header.pointee.floats = allocate(floats)
            header.pointee.capacity = floats
            return header.pointee.floats
        }
        let header = UnsafeMutablePointer<Header>.allocate(capacity: 1)
        header.initialize(to: Header(floats: allocate(floats), capacity: floats))
        pthread_setspecific(key, header)
        return header.pointee.floats
    }

    private static func allocate(_ floats: Int) -> UnsafeMutablePointer<Float> {
        UnsafeMutableRawPointer.allocate(byteCount: floats * 4, alignment: 64).bindMemory(to: Float.self, capacity: floats)
    }
}
