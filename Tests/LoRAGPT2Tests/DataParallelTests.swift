// Data-parallel training: N ranks, each with its rows of every global batch and gradients averaged by scored tokens,
// train as one process with the global batch. In process, ranks are threads (ThreadGroup); under MPI, the built
// `lora` binary runs as two ranks of `mpirun --oversubscribe -np 2` and is checked against the PyTorch + PEFT fixture.
import Foundation
import LoRATestSupport
import SwiftLoRA
import Testing

/// A CPU backend of its own (one thread, its own memory pool), so thread ranks share nothing.
private func privateCPU() -> CPUBackend { CPUBackend(pool: ThreadPool(threadCount: 1), memory: HostMemoryPool(limit: 64 << 20)) }

/// What one run (one rank, or a single process) saw and ended with.
private struct RunResult: Sendable {
    var losses: [Float] = [], norms: [Float] = [], eval: Float? = nil
    var parameters: [String: [Float]] = [:]
    var dropoutSeeds: [UInt64] = []
}

/// Trains a fresh adapter (same seed everywhere) on the fixture model for `steps` steps.
private func train(data: TrainingData, eval: [[Int]]? = nil, evalLabels: [[Int]]? = nil, steps: Int, clip: Float = 1,
                   dropout: Float = 0, group: (any ProcessGroup)?) throws -> RunResult {
    let model = try GPT2Model(folder: fixtures, backend: privateCPU())
    try model.applyLoRA(LoRAConfig(rank: 4, alpha: 8, targets: model.defaultLoRATargets, dropout: dropout), seed: 7)
    var options = TrainingOptions(steps: steps)
    (options.learningRate, options.maxGradNorm) = (1e-2, clip)
    let trainer = try Trainer(model: model, data: data, evalData: eval, evalLabels: evalLabels, options: options, group: group)
    try trainer.synchronizeState()
    var result = RunResult()
    for _ in 0..<steps {
        let record = try trainer.trainStep()
        result.losses.append(record.loss)
        result.norms.append(record.gradientNorm)
    }
    result.eval = try trainer.evaluate()
    for p in model.trainableParameters { result.parameters[p.name] = try p.value.toArray() }
    result.dropoutSeeds = model.loraLayers.map(\.layer.nextDropoutSeed)
    return result
}

private func expectClose(_ a: [Float], _ b: [Float], rel: Float, _ what: String) {
    #expect(a.count == b.count, "\(what): \(a.count) vs \(b.count) values")
    for (i, (x, y)) in zip(a, b).enumerated() {
        #expect(abs(x - y) <= rel * max(abs(y), 1e-3), "\(what)[\(i)]: \(x) vs \(y)")
    }
}

private func expectSameRun(_ ranks: [RunResult], _ single: RunResult) {
    for (rank, run) in ranks.enumerated() {
        expectClose(run.losses, single.losses, rel: 1e-5, "rank \(rank) losses")
        expectClose(run.norms, single.norms, rel: 1e-4, "rank \(rank) gradient norms")
        if let e = single.eval { expectClose([run.eval ?? .nan], [e], rel: 1e-5, "rank \(rank) eval loss") }
        for (name, values) in single.parameters {
            #expect(firstMismatch(run.parameters[name] ?? [], values, atol: 1e-5, rtol: 1e-4) == nil, "rank \(rank) \(name)")
        }
    }
}

@Suite("Data-parallel training on thread ranks")
struct DataParallelTests {
    @Test("2 ranks reproduce PyTorch + PEFT's 10 AdamW steps on the fixture (one row each) and its trained adapter")
    func fixtureCurve() throws {
        let expected = try Expected()
        let reference = try expected.values("train_losses")
        let tokens = expected.tokens
        let results = ThreadGroup.run(size: 2) { member -> RunResult in
            let model = try GPT2Model(folder: fixtures, backend: privateCPU())
            try model.loadAdapter(folder: fixtures + "/adapter")
            var options = TrainingOptions(steps: 10)
            (options.learningRate, options.maxGradNorm) = (1e-3, 0)
            let trainer = try Trainer(model: model, data: try TrainingData(fixedBatch: tokens), options: options, group: member)
            try trainer.synchronizeState()
            var result = RunResult()
            for _ in 0..<10 { result.losses.append(try trainer.trainStep().loss) }
            for p in model.trainableParameters { result.parameters[p.name] = try p.value.toArray() }
            return result
        }
        for (rank, result) in results.enumerated() {
            let run = try result.get()
            expectClose(run.losses, reference, rel: 1e-5, "rank \(rank) vs PEFT")
            for (name, values) in run.parameters {
                #expect(firstMismatch(values, try expected.values("trained." + name), atol: 1e-4, rtol: 0) == nil, "rank \(rank) \(name)")
            }
        }
    }

    @Test("2 ranks × batch 3 equal 1 process × batch 6 on text windows: losses, clipped norms, eval loss, adapter (a short last batch leaves rank 1 none)")
    func windowsMatchOneProcess() throws {
        var generator = SeededGenerator(seed: 11)
        let stream = (0..<300).map { _ in Int(generator.next() % 400) }
        let eval = (0..<5).map { _ in (0..<9).map { _ in Int(generator.next() % 400) } }
        // 33 windows of 9: an epoch is 5 batches of 6 and one of 3 (rows 0-2: all rank 0's).
        let single = try train(data: TrainingData(stream: stream, seq: 8, batch: 6, seed: 5), eval: eval, steps: 8, group: nil)
        let ranks = ThreadGroup.run(size: 2) { member in
            try train(data: TrainingData(stream: stream, seq: 8, batch: 6, seed: 5), eval: eval, steps: 8, group: member)
        }
        expectSameRun(try ranks.map { try $0.get() }, single)
    }

    @Test("labelled examples of different lengths: 2 ranks × 2 equal 1 × 4 (gradients weighted by each rank's scored tokens)")
    func labelledExamplesMatchOneProcess() throws {
        var generator = SeededGenerator(seed: 12)
        var examples: [[Int]] = [], labels: [[Int]] = []
        for i in 0..<12 {
            let length = 4 + Int(generator.next() % 9)
            let ids = (0..<length).map { _ in Int(generator.next() % 400) }
            // Prompt tokens unscored, as chat data has them: from none to most of the example.
            let prompt = i % 4 == 0 ? length - 2 : Int(generator.next() % UInt64(length / 2 + 1))
            examples.append(ids)
            labels.append(ids.enumerated().map { $0.offset < prompt ? -100 : $0.element })
        }
        let (ids, targets) = (examples, labels)
        let data = try TrainingData(examples: ids, labels: targets, batch: 4, seed: 3, padID: 0)
        let single = try train(data: data, eval: Array(ids.prefix(5)), evalLabels: Array(targets.prefix(5)), steps: 6, group: nil)
        let ranks = ThreadGroup.run(size: 2) { member in
            try train(data: data, eval: Array(ids.prefix(5)), evalLabels: Array(targets.prefix(5)), steps: 6, group: member)
        }
        expectSameRun(try ranks.map { try $0.get() }, single)
    }

    @Test("with dropout, 2 ranks × batch 2 equal 1 process × batch 4: each rank's rows get the global batch's mask, a rank without rows keeps the seeds")
    func dropoutMatchesOneProcess() throws {
        var generator = SeededGenerator(seed: 13)
        let stream = (0..<200).map { _ in Int(generator.next() % 400) }
        // 22 windows of 9: step 6 is the epoch's short last batch of 2 rows, all rank 0's (rank 1 runs no forward, yet
        // its seeds must move on as rank 0's do).
        let single = try train(data: TrainingData(stream: stream, seq: 8, batch: 4, seed: 5), steps: 8, dropout: 0.3, group: nil)
        let ranks = try ThreadGroup.run(size: 2) { member in
            try train(data: TrainingData(stream: stream, seq: 8, batch: 4, seed: 5), steps: 8, dropout: 0.3, group: member)
        }.map { try $0.get() }
        expectSameRun(ranks, single)
        #expect(ranks[0].dropoutSeeds == single.dropoutSeeds && ranks[1].dropoutSeeds == single.dropoutSeeds)
        // Two equal rows, one per rank: rank 0's mask on both would be one process training on that row alone; the
        // global batch's mask differs between its rows, so the second step's loss does too (the first cannot: B starts
        // at zero, so the masked path adds nothing yet).
        let row = Array(stream.prefix(9))
        let alone = try train(data: TrainingData(fixedBatch: [row]), steps: 2, dropout: 0.3, group: nil)
        let both = try train(data: TrainingData(fixedBatch: [row, row]), steps: 2, dropout: 0.3, group: nil)
        let pair = try ThreadGroup.run(size: 2) { member in
            try train(data: TrainingData(fixedBatch: [row, row]), steps: 2, dropout: 0.3, group: member)
        }.map { try $0.get() }
        expectSameRun(pair, both)
        #expect(pair[0].losses[1] != alone.losses[1], "rank 1 reused rank 0's dropout mask")
    }

    @Test("packed windows (--packing): 2 ranks × 2 equal 1 × 4, each rank's rows keeping their examples' boundaries")
    func packedWindowsMatchOneProcess() throws {
        var generator = SeededGenerator(seed: 14)
        var examples: [[Int]] = [], labels: [[Int]] = []
        for _ in 0..<30 {
            let length = 3 + Int(generator.next() % 10)
            let ids = (0..<length).map { _ in Int(generator.next() % 400) }
            let prompt = Int(generator.next() % UInt64(length / 2 + 1))
            examples.append(ids)
            labels.append(ids.enumerated().map { $0.offset < prompt ? -100 : $0.element })
        }
        let (ids, targets) = (examples, labels)
        @Sendable func data() throws -> TrainingData { try TrainingData(packing: ids, labels: targets, length: 16, batch: 4, seed: 3, padID: 0) }
        #expect(try data().segments!.contains { $0.count > 1 }, "no window packs two examples: the test would prove nothing")
        let single = try train(data: data(), steps: 5, dropout: 0.1, group: nil)
        let ranks = ThreadGroup.run(size: 2) { member in try train(data: data(), steps: 5, dropout: 0.1, group: member) }
        expectSameRun(try ranks.map { try $0.get() }, single)
    }

    @Test("a batch that does not split over the ranks is refused on every rank")
    func unevenSplitRefused() throws {
        let tokens = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
        let results = ThreadGroup.run(size: 2) { member in
            try member.agree {
                let model = try GPT2Model(folder: fixtures, backend: privateCPU())
                try model.applyLoRA(LoRAConfig(rank: 2, alpha: 4, targets: model.defaultLoRATargets))
                _ = try Trainer(model: model, data: try TrainingData(fixedBatch: tokens), options: TrainingOptions(steps: 1), group: member)
            }
        }
        for result in results {
            #expect(throws: ProcessGroupError.self) { try result.get() }
            if case .failure(let error) = result {
                #expect("\(error)".contains("every rank of 2: the 3 rows of the token array cannot be split evenly over 2 ranks"), "\(error)")
            }
        }
    }

    @Test("different settings on one rank: every rank refuses, naming the setting and both values")
    func settingsMismatchRefused() throws {
        let results = ThreadGroup.run(size: 3) { member in
            try member.requireSameSettings(["--model": "/m", "--lr": member.rank == 2 ? "0.002" : "0.001"])
        }
        for result in results {
            if case .failure(let error) = result {
                #expect("\(error)" == "rank 2 of 3: this rank's configuration differs from rank 0's: --lr is 0.002 here but 0.001 on rank 0 (every rank must run the same command on the same files)")
            } else {
                Issue.record("a rank went on with another rank's settings")
            }
        }
        let same = ThreadGroup.run(size: 2) { member in try member.requireSameSettings(["--model": "/m"]) }
        for result in same { #expect(throws: Never.self) { try result.get() } }
    }
}

@Suite("MPI launch detection")
struct MPILaunchTests {
    @Test("Open MPI's, Hydra's and srun's variables give rank, size and local rank; alone or in a batch script, none")
    func detect() throws {
        #expect(MPILaunch.detect(environment: ["OMPI_COMM_WORLD_RANK": "3", "OMPI_COMM_WORLD_SIZE": "8", "OMPI_COMM_WORLD_LOCAL_RANK": "1",
                                               "OMPI_COMM_WORLD_LOCAL_SIZE": "4", "PMI_RANK": "0", "PMI_SIZE": "1"])
                == MPILaunch(rank: 3, size: 8, localRank: 1, localSize: 4, launcher: "Open MPI (OMPI_COMM_WORLD_RANK)"))
        #expect(MPILaunch.detect(environment: ["PMI_RANK": "1", "PMI_SIZE": "2", "MPI_LOCALRANKID": "1", "MPI_LOCALNRANKS": "2"])
                == MPILaunch(rank: 1, size: 2, localRank: 1, localSize: 2, launcher: "PMI (PMI_RANK)"))
        #expect(MPILaunch.detect(environment: ["SLURM_PROCID": "5", "SLURM_STEP_NUM_TASKS": "8", "SLURM_LOCALID": "1",
                                               "SLURM_STEP_TASKS_PER_NODE": "4(x2)"])
                == MPILaunch(rank: 5, size: 8, localRank: 1, localSize: 4, launcher: "Slurm (SLURM_PROCID)"))
        // sbatch's own shell has SLURM_PROCID and SLURM_NTASKS but is no step: it must not wait for peers.
        #expect(MPILaunch.detect(environment: ["SLURM_PROCID": "0", "SLURM_NTASKS": "8"]) == nil)
        #expect(MPILaunch.detect(environment: [:]) == nil)
    }

    @Test("LORA_MPI: auto trains data-parallel only with several ranks; on needs a launcher; off never; others refused")
    func modes() throws {
        let two = MPILaunch(rank: 0, size: 2, localRank: 0, localSize: 2, launcher: "test")
        let one = MPILaunch(rank: 0, size: 1, localRank: 0, localSize: 1, launcher: "test")
        #expect(try MPILaunch.wanted(mode: .auto, launch: two))
        #expect(try !MPILaunch.wanted(mode: .auto, launch: one))
        #expect(try !MPILaunch.wanted(mode: .auto, launch: nil))
        #expect(try !MPILaunch.wanted(mode: .off, launch: two))
        #expect(try MPILaunch.wanted(mode: .on, launch: one))
        #expect(throws: MPIError.self) { try MPILaunch.wanted(mode: .on, launch: nil) }
        #expect(try MPILaunch.mode(environment: ["LORA_MPI": "0"]) == .off)
        #expect(throws: MPIError.self) { try MPILaunch.mode(environment: ["LORA_MPI": "maybe"]) }
    }

    @Test("a missing MPI library is an error naming the file and what to install")
    func missingLibrary() throws {
        guard case .failure(let error) = MPICommunicator.probe(library: "/nonexistent/libmpi.so.40") else {
            Issue.record("a library that does not exist loaded"); return
        }
        #expect(error.description.hasPrefix("MPI is not available: could not load /nonexistent/libmpi.so.40"))
        #expect(error.description.contains("openmpi-bin"))
    }
}

// MARK: - Under mpirun

/// mpirun (Open MPI or MPICH) and the built `lora` binary, or why the MPI tests cannot run.
enum MPITestSupport {
    /// Set in CI: the MPI tests must run, and fail rather than skip when mpirun or the binary is missing.
    static let required = ProcessInfo.processInfo.environment["LORA_REQUIRE_MPI"] == "1"

    static let mpirun: String? = ProcessInfo.processInfo.environment["PATH"]?.split(separator: ":")
        .map { $0 + "/mpirun" }.first { FileManager.default.isExecutableFile(atPath: $0) }

    /// `lora` beside the test bundle (SwiftPM builds it with the tests), or LORA_BINARY.
    static let lora: String? = {
        if let path = ProcessInfo.processInfo.environment["LORA_BINARY"] { return path }
        var folder = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for _ in 0..<4 {
            let candidate = folder.appendingPathComponent("lora").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            folder = folder.deletingLastPathComponent()
        }
        return nil
    }()

    static var available: Bool { required || (mpirun != nil && lora != nil) }

    /// Runs `mpirun --oversubscribe -np <ranks> lora <arguments>` (as root, with Open MPI's consent variables);
    /// returns the exit status and everything it printed.
    static func run(ranks: Int, _ arguments: [String], environment extra: [String: String] = [:]) throws -> (status: Int32, output: String) {
        guard let mpirun else { throw TestFailure("mpirun not found on PATH: install Open MPI (Debian: openmpi-bin)") }
        guard let lora else { throw TestFailure("the lora binary was not found beside the tests: swift build --product lora, or set LORA_BINARY") }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: mpirun)
        process.arguments = ["--oversubscribe", "-np", String(ranks), lora] + arguments
        var environment = ProcessInfo.processInfo.environment
        environment.merge(["OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1", "OMPI_MCA_rmaps_base_oversubscribe": "1"],
                          uniquingKeysWith: { own, _ in own })
        environment.merge(extra, uniquingKeysWith: { _, new in new })
        process.environment = environment
        let pipe = Pipe()
        (process.standardOutput, process.standardError) = (pipe, pipe)
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: output, as: UTF8.self))
    }

    /// The losses of a metrics.jsonl, in step order.
    static func losses(_ path: String) throws -> [Float] {
        try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map { line in
            guard let loss = (try JSONValue.parse(Data(line.utf8))).objectValue?["loss"]?.doubleValue else {
                throw TestFailure("\(path): no loss in \(line)")
            }
            return Float(loss)
        }
    }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

@Suite("lora train under mpirun -np 2", .serialized,
       .enabled(if: MPITestSupport.available, "mpirun or the lora binary is missing (install openmpi-bin; LORA_REQUIRE_MPI=1 makes this a failure)"))
struct MPITrainTests {
    /// 2 ranks of `lora train` from PEFT's adapter on the fixture's 2 rows (one each), 10 AdamW steps unclipped.
    func fixtureRun(device: String) throws {
        let expected = try Expected()
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("lora-mpi-\(device)-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: out) }
        let (status, output) = try MPITestSupport.run(ranks: 2, [
            "train", "--model", fixtures, "--adapter-init", fixtures + "/adapter", "--tokens", fixtures + "/tokens.json",
            "--steps", "10", "--lr", "1e-3", "--max-grad-norm", "0", "--device", device, "--out", out, "--json"])
        #expect(status == 0, "mpirun exited \(status):\n\(output)")
        #expect(output.contains(#""ranks": 2"#), "\(output)")
        expectClose(try MPITestSupport.losses(out + "/metrics.jsonl"), try expected.values("train_losses"), rel: 1e-5, "\(device) losses vs PEFT")
        let adapter = try SafeTensorsFile(path: out + "/adapter_model.safetensors")
        for name in adapter.names {
            #expect(firstMismatch(try adapter.floats(name), try expected.values("trained." + name), atol: 1e-4, rtol: 0) == nil, "\(name)")
        }
    }

    @Test("2 CPU ranks reproduce PEFT's 10-step curve and trained adapter")
    func cpuFixture() throws { try fixtureRun(device: "cpu") }

    @Test("uneven --tokens rows, or no MPI library, end the job with a message on every rank, no hang")
    func badInput() throws {
        let tokens = ["--model", fixtures, "--tokens", fixtures + "/tokens.json", "--steps", "2", "--out",
                      FileManager.default.temporaryDirectory.appendingPathComponent("lora-mpi-bad-\(UUID().uuidString)").path]
        let uneven = try MPITestSupport.run(ranks: 3, ["train"] + tokens + ["--device", "cpu"])
        #expect(uneven.status != 0)
        for rank in 0..<3 {
            #expect(uneven.output.contains("Error: [rank \(rank)/3] every rank of 3: the 2 rows of the token array cannot be split evenly over 3 ranks"),
                    "\(uneven.output)")
        }
        let missing = try MPITestSupport.run(ranks: 2, ["train"] + tokens, environment: ["LORA_MPI_LIBRARY": "/nonexistent/libmpi.so.40"])
        #expect(missing.status != 0)
        #expect(missing.output.components(separatedBy: "MPI is not available: could not load /nonexistent/libmpi.so.40").count == 3,
                "\(missing.output)")
    }
}

@Suite("OpenCL: lora train under mpirun -np 2", .serialized,
       .enabled(if: MPITestSupport.available && TestDevices.names.contains("opencl"), "needs mpirun, the lora binary and an OpenCL device"))
struct OpenCLMPITrainTests {
    @Test("OpenCL: 2 ranks (local ranks spread over the OpenCL devices) reproduce PEFT's 10-step curve and trained adapter")
    func openCLFixture() throws { try MPITrainTests().fixtureRun(device: "opencl") }
}
