// Everything that can go wrong on the MPI path, as one error type whose messages name the cause and the fix.

/// An MPI failure. `description` is written for the person at the terminal.
public enum MPIError: Error, CustomStringConvertible, Equatable {
    /// The MPI library (or one of its symbols) could not be loaded.
    case libraryUnavailable(library: String, reason: String)
    /// An MPI call returned an error code.
    case call(String, status: Int32, reason: String)
    /// The launcher's environment and the library disagree (a library of another MPI than the one that started us).
    case launchMismatch(String)
    /// A collective waited longer than the watchdog allows.
    case timeout(operation: String, seconds: Double)

    public var description: String {
        switch self {
        case .libraryUnavailable(let library, let reason):
            "MPI is not available: could not load \(library) (\(reason)). Install Open MPI on every node (Debian/Ubuntu: "
                + "openmpi-bin, which brings libopenmpi3 with libmpi.so.40) or MPICH (mpich, libmpich12: libmpich.so.12), "
                + "or name the library with LORA_MPI_LIBRARY=/path/to/libmpi.so"
        case .call(let call, let status, let reason):
            "\(call) failed: \(reason) (MPI error \(status))"
        case .launchMismatch(let reason):
            reason
        case .timeout(let operation, let seconds):
            "\(operation) waited \(Int(seconds)) s for the other ranks (LORA_MPI_TIMEOUT): a rank is stuck or gone"
        }
    }
}
