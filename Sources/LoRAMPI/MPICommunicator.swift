// MPI_COMM_WORLD for a data-parallel job: initialization with errors fatal (a failed call ends the whole job
// instead of returning into a rank that would then wait forever), the collectives training uses on flat host
// buffers, and a watchdog that ends this rank when a collective waits past LORA_MPI_TIMEOUT seconds. Only the main
// thread calls MPI (MPI_THREAD_FUNNELED); the watchdog never does: it prints and _exits, and mpirun, seeing a rank
// gone, ends the others.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The world communicator of an MPI job this process is a rank of.
public final class MPICommunicator: @unchecked Sendable {
    public let rank: Int
    public let size: Int
    /// This rank's place on its node, from the launcher.
    public let launch: MPILaunch
    /// `Open MPI v4.1.4 (libmpi.so.40)`: the library's version and where it came from.
    public let libraryDescription: String
    /// Seconds a collective may wait before the watchdog ends this rank (0: forever).
    public let timeout: Double
    private let api: MPIAPI
    private let watchdog: Watchdog?
    private var finalized = false

    /// The largest count one MPI call takes (its counts are C ints); longer buffers go in pieces.
    static let maxCount = Int(Int32.max)

    /// Loads the library (`LORA_MPI_LIBRARY`, else libmpi.so.40, else libmpi.so.12 or libmpich.so.12; MPICH's first
    /// under its launcher), initializes MPI, makes errors on
    /// the world communicator fatal and checks that the library sees the job the launcher described.
    /// - Parameter timeout: seconds a collective may wait (nil: `LORA_MPI_TIMEOUT`, else 600; 0: no limit).
    public static func initialize(launch: MPILaunch, library: String? = nil, timeout: Double? = nil) throws -> MPICommunicator {
        let api = try MPIAPI.load(path: library, preferMPICH: launch.launcher.hasPrefix("PMI"))
        var already: Int32 = 0
        try api.check(api.initialized(&already), "MPI_Initialized")
        if already == 0 {
            var provided: Int32 = 0
            try api.check(api.initThread(nil, nil, MPIAPI.threadFunneled, &provided), "MPI_Init_thread")
        }
        try api.check(api.commSetErrhandler(api.commWorld, api.errorsAreFatal), "MPI_Comm_set_errhandler")
        var rank: Int32 = 0, size: Int32 = 0
        try api.check(api.commRank(api.commWorld, &rank), "MPI_Comm_rank")
        try api.check(api.commSize(api.commWorld, &size), "MPI_Comm_size")
        guard Int(rank) == launch.rank, Int(size) == launch.size else {
            throw MPIError.launchMismatch("\(launch.launcher) started rank \(launch.rank) of \(launch.size), but \(api.library) "
                + "sees rank \(rank) of \(size): the library is not the MPI whose launcher started the job (mpirun of "
                + "Open MPI needs libmpi.so.40, MPICH's needs libmpi.so.12; set LORA_MPI_LIBRARY)")
        }
        let seconds = timeout ?? environment("LORA_MPI_TIMEOUT").flatMap(Double.init) ?? 600
        return MPICommunicator(api: api, launch: launch, timeout: seconds)
    }

    private init(api: MPIAPI, launch: MPILaunch, timeout: Double) {
        (self.api, self.launch, self.rank, self.size, self.timeout) = (api, launch, launch.rank, launch.size, timeout)
        libraryDescription = "\(api.libraryVersion()) (\(api.library), \(api.abi.rawValue) ABI)"
        watchdog = timeout > 0 ? Watchdog(rank: launch.rank, seconds: timeout) : nil
    }

    /// What `lora devices` reports: the library that would be used and its version, without initializing MPI.
    public static func probe(library: String? = nil) -> Result<String, MPIError> {
        do {
            let api = try MPIAPI.load(path: library, preferMPICH: MPILaunch.detect()?.launcher.hasPrefix("PMI") == true)
            return .success("\(api.libraryVersion()) (\(api.library), \(api.abi.rawValue) ABI)")
        } catch let error as MPIError { return .failure(error) } catch {
            return .failure(.libraryUnavailable(library: library ?? "libmpi", reason: "\(error)"))
        }
    }

    // MARK: - Collectives

    /// Sums `values` over every rank, in place (MPI_Allreduce with MPI_IN_PLACE, MPI_SUM, MPI_FLOAT).
    public func allReduceSum(_ values: UnsafeMutableBufferPointer<Float>) throws {
        try allReduce(UnsafeMutableRawBufferPointer(values), stride: 4, type: api.float, op: api.sum, name: "MPI_Allreduce(float, sum)")
    }

    /// Sums `values` over every rank, in place (MPI_DOUBLE).
    public func allReduceSum(_ values: UnsafeMutableBufferPointer<Double>) throws {
        try allReduce(UnsafeMutableRawBufferPointer(values), stride: 8, type: api.double, op: api.sum, name: "MPI_Allreduce(double, sum)")
    }

    /// The largest of `values` over every rank, elementwise, in place (MPI_DOUBLE, MPI_MAX).
    public func allReduceMax(_ values: UnsafeMutableBufferPointer<Double>) throws {
        try allReduce(UnsafeMutableRawBufferPointer(values), stride: 8, type: api.double, op: api.max, name: "MPI_Allreduce(double, max)")
    }

    private func allReduce(_ bytes: UnsafeMutableRawBufferPointer, stride: Int, type: MPIHandle, op: MPIHandle, name: String) throws {
        let count = bytes.count / stride
        try guarded(name) {
            var start = 0
            while start < count {
                let n = min(Self.maxCount, count - start)
                try api.check(api.allreduce(api.inPlace, bytes.baseAddress! + start * stride, Int32(n), type, op, api.commWorld), name)
                start += n
            }
        }
    }

    /// Every rank's `bytes` (the same length on each) side by side in `into` (`size` × that length), rank order.
    public func allGather(_ bytes: UnsafeRawBufferPointer, into: UnsafeMutableRawBufferPointer) throws {
        precondition(into.count == bytes.count * size, "allGather: \(into.count) bytes cannot hold \(size) × \(bytes.count)")
        precondition(bytes.count <= Self.maxCount, "allGather: \(bytes.count) bytes is more than one MPI call takes")
        try guarded("MPI_Allgather") {
            try api.check(api.allgather(bytes.baseAddress, Int32(bytes.count), api.byte, into.baseAddress, Int32(bytes.count),
                                        api.byte, api.commWorld), "MPI_Allgather")
        }
    }

    /// Root's `bytes` into every rank's `bytes` (the same length on each).
    public func broadcast(_ bytes: UnsafeMutableRawBufferPointer, root: Int) throws {
        try guarded("MPI_Bcast") {
            var start = 0
            while start < bytes.count {
                let n = min(Self.maxCount, bytes.count - start)
                try api.check(api.bcast(bytes.baseAddress! + start, Int32(n), api.byte, Int32(root), api.commWorld), "MPI_Bcast")
                start += n
            }
        }
    }

    /// Waits until every rank is here.
    public func barrier() throws { try guarded("MPI_Barrier") { try api.check(api.barrier(api.commWorld), "MPI_Barrier") } }

    /// Runs a collective under the watchdog.
    private func guarded(_ name: String, _ body: () throws -> Void) throws {
        precondition(!finalized, "\(name) after MPI_Finalize")
        watchdog?.begin(name)
        defer { watchdog?.end() }
        try body()
    }

    // MARK: - Ending

    /// Ends every rank of the job now (MPI_Abort): what a rank does on an error the others cannot know about.
    public func abort(code: Int32 = 1) -> Never {
        _ = api.abort(api.commWorld, code)
        exit(code)  // MPI_Abort does not return; if a library did, leave anyway
    }

    /// MPI_Finalize; collectives may not follow.
    public func finalize() throws {
        guard !finalized else { return }
        finalized = true
        watchdog?.stop()
        try api.check(api.finalize(), "MPI_Finalize")
    }
}

/// Ends the process when one collective has waited longer than `seconds`: prints which, then `_exit(1)`.
private final class Watchdog: @unchecked Sendable {
    private let lock = NSLock()
    /// The start (uptime nanoseconds) of the collective in flight and its name; nil when none.
    private var current: (start: UInt64, operation: String)?
    private var stopped = false
    private let rank: Int, seconds: Double

    init(rank: Int, seconds: Double) {
        (self.rank, self.seconds) = (rank, seconds)
        let thread = Thread { [self] in watch() }
        thread.stackSize = 1 << 16
        thread.start()
    }

    private func watch() {
        let limit = UInt64(seconds * 1e9)
        while true {
            let (state, done) = lock.withLock { (current, stopped) }
            if done { return }
            if let state, DispatchTime.now().uptimeNanoseconds &- state.start > limit {
                let message = "lora (rank \(rank)): error: " + MPIError.timeout(operation: state.operation, seconds: seconds).description
                    + "; ending this rank\n"
                FileHandle.standardError.write(Data(message.utf8))
                _exit(1)
            }
            Thread.sleep(forTimeInterval: min(0.5, max(0.01, seconds / 4)))
        }
    }

    func begin(_ name: String) { lock.withLock { current = (DispatchTime.now().uptimeNanoseconds, name) } }
    func end() { lock.withLock { current = nil } }
    func stop() { lock.withLock { stopped = true } }
}
