// One `lora train` run after its setup: the metrics lines, checkpoints and stops, the progress display, the
// adapter (and the best one), the loss plot and the summary; under MPI only rank 0 writes and prints.
import ArgumentParser
import Foundation
import SwiftLoRA

/// One run's files and display: metrics lines, checkpoints, the progress line, the adapter, the plot.
struct TrainingRun {
    let command: TrainCommand
    let trainer: Trainer
    /// The MPI job this process is a rank of (nil: alone). Rank 0 alone writes files and prints the run's lines.
    var job: DataParallelJob? = nil
    /// The command line that started this run; a run stopped by a signal prints it with `--resume` added.
    var commandLine = CommandLine.arguments

    init(command: TrainCommand, trainer: Trainer, job: DataParallelJob? = nil, commandLine: [String] = CommandLine.arguments) {
        (self.command, self.trainer, self.job, self.commandLine) = (command, trainer, job, commandLine)
    }

    /// Whether this process writes the files: alone, or rank 0.
    var isRoot: Bool { job?.isRoot ?? true }

    /// Runs `body`; in a job, every rank learns whether it threw on any.
    func agreed(_ body: () throws -> Void) throws {
        if let job { try job.agree(body) } else { try body() }
    }

    var checkpointPath: String { command.out + "/checkpoint.safetensors" }
    var metricsPath: String { command.metrics ?? command.out + "/metrics.jsonl" }

    /// Runs the training; returns the median tokens/s and the trained and total parameter counts. SIGINT or SIGTERM
    /// stops it after the step in flight: the checkpoint and the adapter are written, the way to resume printed,
    /// and it throws `ExitCode` 130 or 143.
    @discardableResult
    func execute() throws -> (tokensPerSecond: Double, trained: Int, total: Int) {
        var history: [StepRecord] = []
        try agreed {
            guard isRoot else { return }
            do {
                try FileManager.default.createDirectory(atPath: command.out, withIntermediateDirectories: true)
            } catch {
                throw ValidationError("--out \(command.out): the folder cannot be created (\(error.localizedDescription))")
            }
            history = try prepareMetrics()
            // A resumed run picks up early stopping and the best eval loss where the metrics left them.
            for record in history { if let loss = record.evalLoss { trainer.noteEvaluation(loss, step: record.step) } }
        }
        // Every rank starts from rank 0's adapter, optimizer state and data position (its checkpoint's, resuming).
        if job != nil { try trainer.synchronizeState(root: 0) }
        let options = trainer.options
        let counts = (trained: trainer.model.trainableParameters.reduce(0) { $0 + $1.value.count }, total: totalParameters())
        if trainer.step >= options.steps { return try nothingToDo(counts: counts) }
        if let notice = trainer.optimizer.notice, isRoot {
            if command.json { FileHandle.standardError.write(Data((notice + "\n").utf8)) } else { print(notice) }
        }
        if !command.json && isRoot {
            let ranks = job.map { String(format: " on %d ranks (global batch %d)", $0.size, trainer.data.batch) } ?? ""
            print(String(format: "training %d of %d parameters (%.3f%%), %d steps from step %d%@", counts.trained, counts.total,
                         100 * Double(counts.trained) / Double(counts.total), options.steps, trainer.step, ranks))
        }
        let metrics = isRoot ? try openMetrics() : nil
        defer { try? metrics?.close() }
        let progress = command.json || !isRoot ? nil : Progress(total: options.steps)
        var speeds: [Double] = []
        // In a job, a signal to any one rank stops every rank after the same step (the flag rides on the step's
        // all-reduce); SIGUSR1 is the clean stop, since nothing else sends it. mpirun's SIGTERM (after Ctrl-C, or when a
        // rank died) is followed by SIGKILL within seconds, often before a step can finish. (Open MPI 4.1's mpirun
        // did not forward SIGUSR1 to the ranks here, though its documentation says it does: signal a rank itself.)
        let rankTag = job.map { "[rank \($0.rank)/\($0.size)] " } ?? ""
        let stop = StopSignals(signals: job == nil ? [SIGINT, SIGTERM] : [SIGINT, SIGTERM, SIGUSR1]) { [job] signal in
            let how = job == nil || signal == SIGUSR1 ? "stopping after the step in flight, then writing the checkpoint and the adapter"
                : "stopping after the step every rank is in, if mpirun lets it finish (to stop a job cleanly, send SIGUSR1 to one rank)"
            FileHandle.standardError.write(Data(("\n\(rankTag)\(StopSignals.name(signal)): \(how) (send it again to quit at once)\n").utf8))
        }
        defer { stop.cancel() }
        let end: Trainer.RunEnd
        do {
            end = try trainer.run(checkpointPath: checkpointPath, shouldStop: { stop.signal != nil }) { record in
                speeds.append(record.tokensPerSecond)
                guard let metrics else { return }
                try write(record, to: metrics)
                history.append(record)
                if command.saveBest && record.isBestEval { try saveBest(record) }
                progress?.update(step: record.step, message: String(format: "loss %.4f  %.0f tok/s", record.loss, record.tokensPerSecond))
            }
        } catch let error as TrainingError {
            progress?.finish()
            let saved = FileManager.default.fileExists(atPath: checkpointPath) ? "; the last checkpoint is \(checkpointPath)" : ""
            // In a job, a TrainingError from a step comes from the all-reduced loss or norm: every rank has it.
            if job != nil { throw AgreedFailure(description: "\(error)\(saved)") }
            throw ValidationError("\(error)\(saved)")
        }
        progress?.finish()
        let stoppedBy = end == .stopped ? stop.signal ?? (job != nil ? SIGTERM : nil) : nil
        guard isRoot else {
            if let stoppedBy { throw ExitCode(StopSignals.exitStatus(stoppedBy)) }
            return (speeds.isEmpty ? 0 : speeds.sorted()[speeds.count / 2], counts.trained, counts.total)
        }
        try writeWeights()
        let plot = command.out + "/loss.svg"
        try AtomicFile.write(Data(LossPlot.svg(train: history.map { ($0.step, $0.loss) },
                                               eval: history.compactMap { r in r.evalLoss.map { (r.step, $0) } },
                                               title: "lora train: \(command.model)").utf8), to: plot)
        try summarize(history: history, speeds: speeds, counts: counts, plot: plot, stoppedBy: stoppedBy)
        if let stoppedBy {
            let note = "stopped by \(StopSignals.name(stoppedBy)) after step \(trainer.step) of \(options.steps); checkpoint: \(checkpointPath)\n"
                + "resume with: \(resumeCommand())\n"
            if command.json { FileHandle.standardError.write(Data(note.utf8)) } else { print(note, terminator: "") }
            throw ExitCode(StopSignals.exitStatus(stoppedBy))
        }
        return (speeds.isEmpty ? 0 : speeds.sorted()[speeds.count / 2], counts.trained, counts.total)
    }

    /// The run's command line with `--resume` added (when it is not there), quoted for a POSIX shell.
    func resumeCommand() -> String {
        var arguments = commandLine
        if !arguments.contains("--resume") { arguments.append("--resume") }
        return arguments.map { argument in
            let plain = !argument.isEmpty && argument.unicodeScalars.allSatisfy {
                CharacterSet.alphanumerics.contains($0) && $0.isASCII || "-_./=:,+@%".unicodeScalars.contains($0)
            }
            return plain ? argument : "'" + argument.replacingOccurrences(of: "'", with: #"'\''"#) + "'"
        }.joined(separator: " ")
    }

    /// A resumed run whose checkpoint is already at (or past) the last step: says so, and writes the checkpoint's
    /// adapter (or model), in case the run that wrote it was killed before it did.
    func nothingToDo(counts: (trained: Int, total: Int)) throws -> (tokensPerSecond: Double, trained: Int, total: Int) {
        guard isRoot else { return (0, counts.trained, counts.total) }
        try writeWeights()
        let message = "nothing to do: \(checkpointPath) is at step \(trainer.step) and this run ends at step \(trainer.options.steps); "
            + "\(command.full ? "the model" : "the adapter") in \(command.out) is step \(trainer.step)'s. Give a larger --steps (or --epochs) to train further."
        if command.json {
            print(#"{"steps": \#(trainer.step), "nothing_to_do": true, "message": \#(JSONValue.quote(message)), "out": \#(JSONValue.quote(command.out))}"#)
        } else {
            print(message)
        }
        return (0, counts.trained, counts.total)
    }

    /// The adapter (or, in full fine-tuning, the model folder with its tokenizer) into --out.
    func writeWeights() throws {
        if command.full {
            try trainer.model.save(folder: command.out)
            _ = try copyTokenizerFiles(from: command.model, to: command.out)
        } else {
            try trainer.model.saveAdapter(folder: command.out)
        }
    }

    var bestPath: String { command.out + "/best" }

    /// Writes the adapter (or model) into a fresh folder beside --out/best, then swaps it in by renames, so a kill
    /// leaves the previous best or this one. `best.json` there says its step and eval loss.
    func saveBest(_ record: StepRecord) throws {
        let manager = FileManager.default
        let partial = command.out + "/best.partial", old = command.out + "/best.old"
        try? manager.removeItem(atPath: partial)
        try manager.createDirectory(atPath: partial, withIntermediateDirectories: true)
        if command.full {
            try trainer.model.save(folder: partial)
            _ = try copyTokenizerFiles(from: command.model, to: partial)
        } else {
            try trainer.model.saveAdapter(folder: partial)
        }
        let note = String(format: #"{"step": %d, "eval_loss": %.8g}"#, record.step, record.evalLoss ?? .nan)
        try AtomicFile.write(Data((note + "\n").utf8), to: partial + "/best.json")
        try? manager.removeItem(atPath: old)
        if manager.fileExists(atPath: bestPath) { try manager.moveItem(atPath: bestPath, toPath: old) }
        try manager.moveItem(atPath: partial, toPath: bestPath)
        try? manager.removeItem(atPath: old)
    }

    /// Every element the model computes with: its weights plus any adapters.
    func totalParameters() -> Int {
        trainer.model.baseParameterCount + (command.full ? 0 : trainer.model.trainableParameters.reduce(0) { $0 + $1.value.count })
    }

    /// Resuming: restores the checkpoint and keeps the metrics lines up to its step; otherwise starts them anew.
    func prepareMetrics() throws -> [StepRecord] {
        guard command.resume else {
            try AtomicFile.write(Data(), to: metricsPath)
            return []
        }
        guard FileManager.default.fileExists(atPath: checkpointPath) else {
            throw ValidationError("--resume: there is no \(checkpointPath) to continue from")
        }
        do {
            try trainer.loadCheckpoint(from: checkpointPath)
        } catch let error as TrainingError {
            throw ValidationError("--resume: \(error)")
        }
        let text = (try? String(contentsOfFile: metricsPath, encoding: .utf8)) ?? ""
        var kept: [String] = [], history: [StepRecord] = []
        for line in text.split(separator: "\n") {
            guard let object = (try? JSONValue.parse(Data(line.utf8)))?.objectValue, let step = object["step"]?.intValue,
                  step <= trainer.step else { continue }
            kept.append(String(line))
            if let loss = object["loss"]?.doubleValue {
                history.append(StepRecord(step: step, loss: Float(loss), learningRate: Float(object["lr"]?.doubleValue ?? 0),
                                          gradientNorm: Float(object["grad_norm"]?.doubleValue ?? 0),
                                          tokensPerSecond: object["tokens_per_s"]?.doubleValue ?? 0,
                                          evalLoss: object["eval_loss"]?.doubleValue.map(Float.init)))
            }
        }
        try AtomicFile.write(Data(kept.map { $0 + "\n" }.joined().utf8), to: metricsPath)
        return history
    }

    func openMetrics() throws -> FileHandle {
        guard let handle = FileHandle(forWritingAtPath: metricsPath) else { throw ValidationError("\(metricsPath): cannot be opened") }
        handle.seekToEndOfFile()
        return handle
    }

    func write(_ r: StepRecord, to handle: FileHandle) throws {
        var line = String(format: #"{"step": %d, "loss": %.8g, "lr": %.8g, "grad_norm": %.8g, "tokens_per_s": %.1f"#,
                          r.step, r.loss, r.learningRate, r.gradientNorm, r.tokensPerSecond)
        if let e = r.evalLoss { line += String(format: #", "eval_loss": %.8g"#, e) }
        try handle.write(contentsOf: Data((line + "}\n").utf8))
    }

    func summarize(history: [StepRecord], speeds: [Double], counts: (trained: Int, total: Int), plot: String,
                   stoppedBy: Int32? = nil) throws {
        let median = speeds.isEmpty ? 0 : speeds.sorted()[speeds.count / 2]
        let first = history.first?.loss ?? .nan, last = history.last?.loss ?? .nan
        let evalLoss = history.last?.evalLoss
        if command.json {
            var fields = [String(format: #""steps": %d, "first_loss": %.8g, "final_loss": %.8g, "tokens_per_s": %.1f"#,
                                 trainer.step, first, last, median),
                          #""trained_parameters": \#(counts.trained), "total_parameters": \#(counts.total)"#,
                          #""optimizer": "\#(trainer.optimizer.kind.rawValue)", "optimizer_state_device_bytes": \#(trainer.optimizer.stateDeviceBytes)"#,
                          #""out": \#(JSONValue.quote(command.out)), "metrics": \#(JSONValue.quote(metricsPath)), "plot": \#(JSONValue.quote(plot))"#]
            if let job {
                fields.append(String(format: #""ranks": %d, "global_batch": %d, "allreduce_s": %.4f"#, job.size, trainer.data.batch,
                                     trainer.communicationSeconds))
            }
            if let evalLoss { fields.append(String(format: #""eval_loss": %.8g"#, evalLoss)) }
            if let best = trainer.bestEval {
                fields.append(String(format: #""best_eval_loss": %.8g, "best_step": %d"#, best.loss, best.step))
            }
            if trainer.stoppedEarly { fields.append(#""stopped_early": true"#) }
            if command.saveBest { fields.append(#""best": \#(JSONValue.quote(bestPath))"#) }
            if let stoppedBy { fields.append(#""stopped_by": "\#(StopSignals.name(stoppedBy))", "checkpoint": \#(JSONValue.quote(checkpointPath))"#) }
            print("{" + fields.joined(separator: ", ") + "}")
        } else {
            print(String(format: "loss %.4f → %.4f over %d steps", first, last, trainer.step)
                + (speeds.isEmpty ? "" : String(format: ", %.0f tokens/s (median)", median))
                + (evalLoss.map { String(format: ", eval loss %.4f", $0) } ?? ""))
            let written = command.full ? "model: \(command.out)/config.json + model.safetensors" : "adapter: \(command.out)/adapter_config.json + adapter_model.safetensors"
            print("\(written); metrics: \(metricsPath); plot: \(plot)")
            if trainer.stoppedEarly {
                print("stopped early at step \(trainer.step): \(trainer.options.earlyStoppingPatience) evaluations without a better eval loss")
            }
            if let best = trainer.bestEval, trainer.options.evalEvery > 0 || command.saveBest {
                print(String(format: "best eval loss %.4f at step %d", best.loss, best.step) + (command.saveBest ? " (kept in \(bestPath))" : ""))
            }
        }
    }
}
