// Ctrl-C (SIGINT) and SIGTERM while `lora train` runs: the first one asks the run to stop after the step in flight
// (the trainer then writes its checkpoint, the command the adapter, and the process exits 128 + the signal: 130 or
// 143, as a shell reports a process the signal ended); a second one ends the process at once, as the default would.
// The signals go to dispatch sources instead of their default action, so the handler is ordinary Swift on a
// dispatch thread (free to print), and the training loop reads the flag under a lock between steps.
import Dispatch
import Foundation

/// Catches SIGINT and SIGTERM from `init` until `cancel()`.
final class StopSignals: @unchecked Sendable {
    private let lock = NSLock()
    private var received: Int32?
    private var sources: [DispatchSourceSignal] = []
    private let signals: [Int32]
    private let onFirst: @Sendable (Int32) -> Void

    /// The first signal received, if any.
    var signal: Int32? { lock.withLock { received } }

    /// - Parameter onFirst: runs on a dispatch thread when the first signal arrives (to say what happens next).
    init(signals: [Int32] = [SIGINT, SIGTERM], onFirst: @escaping @Sendable (Int32) -> Void) {
        (self.signals, self.onFirst) = (signals, onFirst)
        for number in signals {
            Foundation.signal(number, SIG_IGN)  // not the default action (ending the process): the source sees it
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { [weak self] in self?.receive(number) }
            source.resume()
            sources.append(source)
        }
    }

    private func receive(_ number: Int32) {
        let first = lock.withLock { () -> Bool in
            defer { if received == nil { received = number } }
            return received == nil
        }
        if first { return onFirst(number) }
        // A second signal: the user wants out now. The default action ends the process with this signal.
        Foundation.signal(number, SIG_DFL)
        raise(number)
    }

    /// Stops catching: the signals take their default action again.
    func cancel() {
        for source in sources { source.cancel() }
        sources = []
        for number in signals { Foundation.signal(number, SIG_DFL) }
    }

    /// The name of a signal this catches.
    static func name(_ number: Int32) -> String {
        switch number {
        case SIGINT: "SIGINT"
        case SIGTERM: "SIGTERM"
        case SIGUSR1: "SIGUSR1"  // a data-parallel job's clean stop: mpirun forwards it to every rank
        default: "signal \(number)"
        }
    }

    /// The exit status a shell gives a process this signal ended: 128 + its number (130 for SIGINT, 143 for SIGTERM).
    static func exitStatus(_ number: Int32) -> Int32 { 128 + number }
}
