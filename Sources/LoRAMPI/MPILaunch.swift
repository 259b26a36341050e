// How this process was started: alone, or as one rank of a job that mpirun (Open MPI, MPICH's Hydra) or Slurm's
// srun launched, read from the variables each launcher sets. Nothing here loads MPI; a process started alone never
// does, so a plain `lora train` needs no MPI installed.
import Foundation

/// One rank's place in a launched job.
public struct MPILaunch: Sendable, Equatable, CustomStringConvertible {
    /// This process's rank in the job, 0 ..< size.
    public let rank: Int
    public let size: Int
    /// This process's rank among those on its node (picks its GPU), and how many there are (nil: not said).
    public let localRank: Int
    public let localSize: Int?
    /// The launcher and the variable it was recognised by (`Open MPI (OMPI_COMM_WORLD_RANK)`).
    public let launcher: String

    public init(rank: Int, size: Int, localRank: Int, localSize: Int?, launcher: String) {
        (self.rank, self.size, self.localRank, self.localSize, self.launcher) = (rank, size, localRank, localSize, launcher)
    }

    public var description: String { "rank \(rank) of \(size) (local rank \(localRank)), started by \(launcher)" }

    /// What `LORA_MPI` asks for.
    public enum Mode: String, Sendable {
        /// Data-parallel when a launcher started more than one rank (the default).
        case auto
        /// Always initialize MPI (a job of one rank still runs through it); a process started alone is an error.
        case on
        /// Never: every process trains alone, whatever started it.
        case off
    }

    /// `LORA_MPI` (`auto`, `on`/`1`, `off`/`0`); anything else throws.
    public static func mode(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> Mode {
        switch environment["LORA_MPI"]?.lowercased() {
        case nil, "", "auto": return .auto
        case "on", "1", "yes": return .on
        case "off", "0", "no": return .off
        case let other?: throw MPIError.launchMismatch("LORA_MPI=\(other): expected auto, on or off")
        }
    }

    /// The launch the environment describes, or nil when no launcher started this process. Open MPI's variables win
    /// over Hydra's, which win over Slurm's (mpirun inside a Slurm allocation sets its own).
    public static func detect(environment: [String: String] = ProcessInfo.processInfo.environment) -> MPILaunch? {
        func int(_ name: String) -> Int? { environment[name].flatMap { Int($0.trimmingCharacters(in: .whitespaces)) } }
        if let rank = int("OMPI_COMM_WORLD_RANK"), let size = int("OMPI_COMM_WORLD_SIZE") {
            return MPILaunch(rank: rank, size: size, localRank: int("OMPI_COMM_WORLD_LOCAL_RANK") ?? 0,
                             localSize: int("OMPI_COMM_WORLD_LOCAL_SIZE"), launcher: "Open MPI (OMPI_COMM_WORLD_RANK)")
        }
        if let rank = int("PMI_RANK"), let size = int("PMI_SIZE") {
            return MPILaunch(rank: rank, size: size, localRank: int("MPI_LOCALRANKID") ?? int("PMI_LOCAL_RANK") ?? 0,
                             localSize: int("MPI_LOCALNRANKS") ?? int("PMI_LOCAL_SIZE"), launcher: "PMI (PMI_RANK)")
        }
        // srun sets SLURM_PROCID for every task of a step; SLURM_STEP_NUM_TASKS only exists inside a step, which
        // keeps a batch script's own shell (rank 0 of its allocation, but no step) from waiting for peers.
        if let rank = int("SLURM_PROCID"), let size = int("SLURM_STEP_NUM_TASKS") {
            let perNode = environment["SLURM_STEP_TASKS_PER_NODE"].flatMap { Int($0.prefix { $0.isNumber }) }
            return MPILaunch(rank: rank, size: size, localRank: int("SLURM_LOCALID") ?? 0, localSize: perNode,
                             launcher: "Slurm (SLURM_PROCID)")
        }
        return nil
    }

    /// Whether this process should train through MPI: with `auto`, when a launcher started more than one rank.
    public static func wanted(mode: Mode, launch: MPILaunch?) throws -> Bool {
        switch mode {
        case .off: return false
        case .auto: return (launch?.size ?? 1) > 1
        case .on:
            guard launch != nil else {
                throw MPIError.launchMismatch("LORA_MPI=on, but no launcher started this process (no OMPI_COMM_WORLD_RANK, "
                    + "PMI_RANK or SLURM_PROCID): start it with mpirun or srun")
            }
            return true
        }
    }
}
