// A progress display: a redrawn line on a terminal, plain lines every 10% when output is piped.
import Foundation

final class Progress {
    let total: Int
    private let start = Date()
    private let isTerminal = isatty(STDOUT_FILENO) != 0
    private var lastPrinted = 0

    init(total: Int) { self.total = total }

    func update(step: Int, message: String) {
        let elapsed = Date().timeIntervalSince(start)
        let left = elapsed / Double(step) * Double(total - step)
        let line = String(format: "step %d/%d  %@  %.1fs elapsed, %.1fs left", step, total, message, elapsed, left)
        if isTerminal {
            FileHandle.standardOutput.write(Data(("\r\u{1B}[K" + line).utf8))
            FileHandle.standardOutput.synchronizeFile()
        } else if step == total || step * 10 / total > lastPrinted * 10 / total || step == 1 {
            print(line)
            lastPrinted = step
        }
    }

    func finish() {
        if isTerminal { print("") }
    }
}
