// Paged AdamW on the CPU (where it is plain AdamW), the optimizer names the CLI parses, and checkpoints that
// adamw and paged_adamw runs resume from each other. The OpenCL side is OpenCLPagedAdamWTests.
import Foundation
import LoRATestSupport
import SwiftLoRA
import Testing

@Suite("Paged AdamW")
struct PagedAdamWTests {
    @Test("paged_adamw on the CPU is AdamW bit for bit, says so once, and counts every moment as device memory")
    func cpuIsPlainAdamW() throws {
        let paged = try OptimizerCase.run(.pagedAdamW, on: CPUBackend.shared, steps: 4)
        let plain = try OptimizerCase.run(.adamw, on: CPUBackend.shared, steps: 4)
        #expect(paged.bits == plain.bits)
        #expect(!paged.optimizer.isPaged && plain.optimizer.notice == nil)
        #expect(paged.optimizer.notice == "paged_adamw on the CPU device is plain AdamW: host memory is device memory")
        let all = OptimizerCase.shapes.reduce(0) { $0 + 2 * 4 * $1.reduce(1, *) }
        #expect(paged.optimizer.stateDeviceBytes == all && plain.optimizer.stateDeviceBytes == all)
        #expect(try OptimizerCase.run(.sgd, on: CPUBackend.shared, steps: 1).optimizer.stateDeviceBytes == 0)
    }

    @Test("optimizer names: adamw, paged_adamw and sgd parse; anything else is an error that lists them")
    func names() throws {
        #expect(try Optimizer.Kind.named("paged_adamw") == .pagedAdamW)
        #expect(try Optimizer.Kind.named("adamw") == .adamw && Optimizer.Kind.named("sgd") == .sgd)
        #expect(throws: LoRAError.invalidArgument("unknown optimizer 'adam': use adamw, paged_adamw, sgd")) {
            try Optimizer.Kind.named("adam")
        }
    }

    @Test("a paged_adamw checkpoint resumes as paged_adamw or adamw, and an adamw one as paged_adamw; sgd's as neither")
    func checkpointsAcrossKinds() throws {
        let run = try OptimizerCase.checkpointRoundTrips(on: CPUBackend.shared)
        #expect(run.whole[.adamw]! == run.whole[.pagedAdamW]!)
        #expect(run.resumed.count == 4)
        for (written, resumedAs, losses) in run.resumed {
            #expect(losses == Array(run.whole[.adamw]![4...]), "\(written.rawValue) resumed as \(resumedAs.rawValue)")
        }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("lora-sgd-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let sgd = try OptimizerCase.trainer(.sgd, on: CPUBackend.shared)
        _ = try sgd.trainStep()
        try sgd.saveCheckpoint(to: directory + "/sgd.safetensors")
        try OptimizerCase.trainer(.pagedAdamW, on: CPUBackend.shared).saveCheckpoint(to: directory + "/paged.safetensors")
        #expect(throws: FormatError.self) { try OptimizerCase.trainer(.pagedAdamW, on: CPUBackend.shared).loadCheckpoint(from: directory + "/sgd.safetensors") }
        #expect(throws: FormatError.self) { try OptimizerCase.trainer(.sgd, on: CPUBackend.shared).loadCheckpoint(from: directory + "/paged.safetensors") }
    }
}
