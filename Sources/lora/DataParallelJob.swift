// A `lora` process started by mpirun or srun as one rank of a data-parallel job: MPI initialized before the device
// is chosen, errors every rank knows about reported by each and ended together, an error of one rank alone ending the
// whole job (MPI_Abort), never a rank left waiting. Started alone (or with LORA_MPI=off), none of this runs and MPI
// is never loaded.
import ArgumentParser
import Foundation
import SwiftLoRA

/// An error every rank of the job hit at the same point (a collective told them all), so each can report it and
/// leave without MPI_Abort.
struct AgreedFailure: Error, CustomStringConvertible {
    let description: String
}

/// This process's part in an MPI job.
struct DataParallelJob {
    let communicator: MPICommunicator

    var rank: Int { communicator.rank }
    var size: Int { communicator.size }
    var isRoot: Bool { rank == 0 }

    /// Initializes MPI when a launcher started this process as one of several ranks (or LORA_MPI=on); nil when it runs
    /// alone. On the CPU, ranks sharing a node split its cores (LORA_THREADS, unless set). A missing library throws,
    /// on every rank, before any rank waits for another.
    static func start() throws -> DataParallelJob? {
        let launch = MPILaunch.detect()
        guard try MPILaunch.wanted(mode: MPILaunch.mode(), launch: launch), let launch else { return nil }
        if ProcessInfo.processInfo.environment["LORA_THREADS"] == nil, let local = launch.localSize, local > 1 {
            setenv("LORA_THREADS", String(max(1, ProcessInfo.processInfo.activeProcessorCount / local)), 1)
        }
        do {
            return DataParallelJob(communicator: try MPICommunicator.initialize(launch: launch))
        } catch {
            // Every rank fails here alike (the library is missing on its node, or is another MPI): each says so and exits.
            throw AgreedFailure(description: "\(launch): \(error)")
        }
    }

    /// Runs `body` (a command's work on this rank); never returns. An `AgreedFailure` or `ProcessGroupError` (every
    /// rank has it) is printed and every rank exits 1 after MPI_Finalize; an `ExitCode` (a stop by signal, agreed
    /// through the step's all-reduce) exits with it; any other error is this rank's alone: printed, then MPI_Abort
    /// ends every rank.
    func run(_ body: () throws -> Void) -> Never {
        do {
            try body()
            try communicator.finalize()
            Foundation.exit(0)
        } catch let code as ExitCode {
            try? communicator.finalize()
            Foundation.exit(code.rawValue)
        } catch let error as AgreedFailure {
            report(error.description)
            try? communicator.finalize()
            Foundation.exit(1)
        } catch let error as ProcessGroupError {
            report(error.description)
            try? communicator.finalize()
            Foundation.exit(1)
        } catch {
            report("\(Self.message(error)); ending every rank of the job")
            communicator.abort(code: 1)
        }
    }

    /// Prints `message` as this rank's error on stderr.
    func report(_ message: String) {
        FileHandle.standardError.write(Data("Error: [rank \(rank)/\(size)] \(message)\n".utf8))
    }

    /// An error's text as ArgumentParser would print it.
    static func message(_ error: Error) -> String {
        if let validation = error as? ValidationError { return validation.message }
        return "\(error)"
    }

    /// Runs `body` on every rank; if it throws on any, every rank throws an `AgreedFailure` naming each failed rank.
    func agree<T>(_ body: () throws -> T) throws -> T {
        do {
            return try communicator.agree {
                do { return try body() } catch { throw AgreedFailure(description: Self.message(error)) }
            }
        } catch let error as ProcessGroupError { throw AgreedFailure(description: error.description) }
    }
}
