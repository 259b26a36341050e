// The few MPI entry points data-parallel training needs, declared by hand and bound at run time with dlopen/dlsym
// (as the OpenCL loader is), so the package builds and runs with no MPI installed.
//
// Two ABIs are in use on Linux, and both are handled:
// - Open MPI (libmpi.so.40): a handle (MPI_Comm, MPI_Datatype, MPI_Op, MPI_Errhandler) is a pointer to a global
//   object the library exports: MPI_COMM_WORLD is &ompi_mpi_comm_world, MPI_FLOAT &ompi_mpi_float, MPI_SUM
//   &ompi_mpi_op_sum. Those addresses come from dlsym. MPI_IN_PLACE is (void *)1.
// - MPICH and its ABI family (libmpi.so.12: MPICH, Intel MPI, MVAPICH): a handle is a 32-bit int with fixed values
//   from mpi.h (MPI_COMM_WORLD 0x44000000, MPI_FLOAT 0x4c00040a, ...). MPI_IN_PLACE is (void *)-1.
// Every handle parameter is declared as a pointer-sized integer: on x86-64 and arm64 an `int` argument travels in
// the low half of the same register a pointer does, so one set of function types serves both ABIs.
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A handle as the C functions take it: an Open MPI object's address, or an MPICH handle's value.
typealias MPIHandle = Int

/// Function-pointer types of the entry points used (names as in mpi.h without the `MPI_` prefix).
enum MPIFunction {
    typealias Initialized = @convention(c) (UnsafeMutablePointer<Int32>?) -> Int32
    typealias InitThread = @convention(c) (UnsafeMutablePointer<Int32>?, OpaquePointer?, Int32, UnsafeMutablePointer<Int32>?) -> Int32
    typealias Finalize = @convention(c) () -> Int32
    typealias CommRank = @convention(c) (MPIHandle, UnsafeMutablePointer<Int32>?) -> Int32
    typealias Abort = @convention(c) (MPIHandle, Int32) -> Int32
    typealias CommSetErrhandler = @convention(c) (MPIHandle, MPIHandle) -> Int32
    /// MPI_Allreduce(sendbuf, recvbuf, count, datatype, op, comm)
    typealias Allreduce = @convention(c) (UnsafeRawPointer?, UnsafeMutableRawPointer?, Int32, MPIHandle, MPIHandle, MPIHandle) -> Int32
    /// MPI_Bcast(buffer, count, datatype, root, comm)
    typealias Bcast = @convention(c) (UnsafeMutableRawPointer?, Int32, MPIHandle, Int32, MPIHandle) -> Int32
    /// MPI_Allgather(sendbuf, sendcount, sendtype, recvbuf, recvcount, recvtype, comm)
    typealias Allgather = @convention(c) (UnsafeRawPointer?, Int32, MPIHandle, UnsafeMutableRawPointer?, Int32, MPIHandle, MPIHandle) -> Int32
    typealias Barrier = @convention(c) (MPIHandle) -> Int32
    typealias GetLibraryVersion = @convention(c) (UnsafeMutablePointer<CChar>?, UnsafeMutablePointer<Int32>?) -> Int32
    typealias ErrorString = @convention(c) (Int32, UnsafeMutablePointer<CChar>?, UnsafeMutablePointer<Int32>?) -> Int32
}

/// Which handle ABI a library uses.
public enum MPIABI: String, Sendable {
    /// Handles are pointers to exported objects (libmpi.so.40).
    case openMPI = "Open MPI"
    /// Handles are ints with mpi.h's fixed values (libmpi.so.12: MPICH, Intel MPI, MVAPICH).
    case mpich = "MPICH"
}

/// The MPI entry points and predefined handles, bound from a dynamically loaded MPI library.
struct MPIAPI: @unchecked Sendable {
    let library: String
    let abi: MPIABI
    let initialized: MPIFunction.Initialized
    let initThread: MPIFunction.InitThread
    let finalize: MPIFunction.Finalize
    let commRank: MPIFunction.CommRank
    let commSize: MPIFunction.CommRank
    let abort: MPIFunction.Abort
    let commSetErrhandler: MPIFunction.CommSetErrhandler
    let allreduce: MPIFunction.Allreduce
    let bcast: MPIFunction.Bcast
    let allgather: MPIFunction.Allgather
    let barrier: MPIFunction.Barrier
    let getLibraryVersion: MPIFunction.GetLibraryVersion
    let errorString: MPIFunction.ErrorString

    // Predefined handles, per ABI.
    let commWorld: MPIHandle
    let byte: MPIHandle, float: MPIHandle, double: MPIHandle
    let sum: MPIHandle, max: MPIHandle
    let errorsAreFatal: MPIHandle
    /// MPI_IN_PLACE as the send buffer of an in-place all-reduce.
    let inPlace: UnsafeRawPointer

    /// MPI_THREAD_FUNNELED: only the main thread calls MPI (the same value, 1, in both ABIs).
    static let threadFunneled: Int32 = 1
    /// MPI_MAX_LIBRARY_VERSION_STRING: Open MPI 256, MPICH 8192; the larger serves both.
    static let maxLibraryVersion = 8192

    /// The libraries tried when none is named: Open MPI's soname, then the MPICH ABI's (Debian's libmpich12 ships
    /// only libmpich.so.12); MPICH's first when its launcher (Hydra: PMI_RANK) started the job.
    static func defaultLibraries(preferMPICH: Bool) -> [String] {
        preferMPICH ? ["libmpi.so.12", "libmpich.so.12", "libmpi.so.40"] : ["libmpi.so.40", "libmpi.so.12", "libmpich.so.12"]
    }

    /// Every entry point bound here, by its C name.
    static let entryPoints = ["MPI_Initialized", "MPI_Init_thread", "MPI_Finalize", "MPI_Comm_rank", "MPI_Comm_size",
                              "MPI_Abort", "MPI_Comm_set_errhandler", "MPI_Allreduce", "MPI_Bcast", "MPI_Allgather",
                              "MPI_Barrier", "MPI_Get_library_version", "MPI_Error_string"]

    /// Loads `path` (default: `LORA_MPI_LIBRARY`, else the first of `defaultLibraries` that loads) and binds every
    /// entry point and predefined handle. Throws `MPIError.libraryUnavailable` with dlerror's text when it cannot.
    static func load(path: String? = nil, preferMPICH: Bool = false) throws -> MPIAPI {
        let candidates = path.map { [$0] } ?? environment("LORA_MPI_LIBRARY").map { [$0] } ?? defaultLibraries(preferMPICH: preferMPICH)
        var reasons: [String] = []
        for candidate in candidates {
            // RTLD_GLOBAL: Open MPI's plugins (mca_*.so), which it dlopens itself, resolve symbols from libmpi.
            guard let handle = dlopen(candidate, RTLD_NOW | RTLD_GLOBAL) else {
                reasons.append(dlErrorText())
                continue
            }
            return try bind(handle, library: candidate)
        }
        throw MPIError.libraryUnavailable(library: candidates.joined(separator: " or "), reason: reasons.joined(separator: "; "))
    }

    private static func bind(_ handle: UnsafeMutableRawPointer, library: String) throws -> MPIAPI {
        func symbol(_ name: String) throws -> UnsafeMutableRawPointer {
            guard let address = dlsym(handle, name) else {
                throw MPIError.libraryUnavailable(library: library, reason: "missing symbol \(name)")
            }
            return address
        }
        func bind<F>(_ name: String, as type: F.Type = F.self) throws -> F { unsafeBitCast(try symbol(name), to: F.self) }
        // Open MPI exports its predefined objects; an MPICH-ABI library has no such symbol.
        let abi: MPIABI = dlsym(handle, "ompi_mpi_comm_world") != nil ? .openMPI : .mpich
        func object(_ name: String) throws -> MPIHandle { Int(bitPattern: try symbol(name)) }
        let handles: (comm: MPIHandle, byte: MPIHandle, float: MPIHandle, double: MPIHandle, sum: MPIHandle, max: MPIHandle,
                      fatal: MPIHandle, inPlace: Int)
        switch abi {
        case .openMPI:
            handles = (try object("ompi_mpi_comm_world"), try object("ompi_mpi_byte"), try object("ompi_mpi_float"),
                       try object("ompi_mpi_double"), try object("ompi_mpi_op_sum"), try object("ompi_mpi_op_max"),
                       try object("ompi_mpi_errors_are_fatal"), 1)
        case .mpich:
            // mpi.h of MPICH 3.x/4.x (the values the MPICH ABI initiative fixed for libmpi.so.12).
            handles = (0x4400_0000, 0x4c00_010d, 0x4c00_040a, 0x4c00_080b, 0x5800_0003, 0x5800_0001, 0x5400_0000, -1)
        }
        return try MPIAPI(
            library: library, abi: abi,
            initialized: bind("MPI_Initialized"), initThread: bind("MPI_Init_thread"), finalize: bind("MPI_Finalize"),
            commRank: bind("MPI_Comm_rank"), commSize: bind("MPI_Comm_size"), abort: bind("MPI_Abort"),
            commSetErrhandler: bind("MPI_Comm_set_errhandler"), allreduce: bind("MPI_Allreduce"), bcast: bind("MPI_Bcast"),
            allgather: bind("MPI_Allgather"), barrier: bind("MPI_Barrier"),
            getLibraryVersion: bind("MPI_Get_library_version"), errorString: bind("MPI_Error_string"),
            commWorld: handles.comm, byte: handles.byte, float: handles.float, double: handles.double, sum: handles.sum,
            max: handles.max, errorsAreFatal: handles.fatal, inPlace: UnsafeRawPointer(bitPattern: handles.inPlace)!)
    }

    /// The library's own version text (MPI_Get_library_version), first line only.
    func libraryVersion() -> String {
        var text = [CChar](repeating: 0, count: Self.maxLibraryVersion + 1)
        var length: Int32 = 0
        guard getLibraryVersion(&text, &length) == 0 else { return "unknown version" }
        let version = text.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        // Open MPI: "Open MPI v4.1.4, package: Debian OpenMPI, ident: ..."; MPICH: "MPICH Version:\t4.0.2\n...".
        let first = version.split(separator: "\n").first.map(String.init) ?? version
        return (first.split(separator: ",").first.map(String.init) ?? first).replacingOccurrences(of: "\t", with: " ")
            .trimmingCharacters(in: .whitespaces)
    }

    /// Throws unless `status` is MPI_SUCCESS (0), naming the call and the library's text for the code.
    func check(_ status: Int32, _ call: String) throws {
        guard status != 0 else { return }
        var text = [CChar](repeating: 0, count: 1025)
        var length: Int32 = 0
        let reason = errorString(status, &text, &length) == 0 ? text.withUnsafeBufferPointer { String(cString: $0.baseAddress!) } : "error \(status)"
        throw MPIError.call(call, status: status, reason: reason)
    }
}

func environment(_ name: String) -> String? {
    guard let value = getenv(name) else { return nil }
    let s = String(cString: value)
    return s.isEmpty ? nil : s
}

func dlErrorText() -> String {
    guard let text = dlerror() else { return "unknown dlopen error" }
    return String(cString: text)
}
