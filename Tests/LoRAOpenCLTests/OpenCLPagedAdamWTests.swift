// Paged AdamW on OpenCL: moments in CL_MEM_ALLOC_HOST_PTR buffers, streamed through two device staging pairs on
// the transfer queue, bit for bit AdamW's; checkpoints either way; the transfers themselves. Names start with
// "OpenCL" so CI counts them.
import Foundation
import LoRATestSupport
import SwiftLoRA
import Testing

@Suite("OpenCL paged AdamW", .enabled(if: TestDevices.runOpenCL, "\(TestDevices.skipReason)"))
struct OpenCLPagedAdamWTests {
    var cl: OpenCLBackend { get throws { try TestDevices.openCL.get() } }

    @Test("OpenCL paged AdamW equals AdamW bit for bit over 6 steps of 7 tensors, its moments in host memory")
    func equalsAdamW() throws {
        let paged = try OptimizerCase.run(.pagedAdamW, on: cl, steps: 6)
        let plain = try OptimizerCase.run(.adamw, on: cl, steps: 6)
        #expect(paged.bits == plain.bits)
        #expect(paged.optimizer.isPaged && paged.optimizer.notice == nil)
        let cl = try cl
        #expect(paged.optimizer.moments.allSatisfy { cl.isHostResident($0.m) && cl.isHostResident($0.v) })
        #expect(plain.optimizer.moments.allSatisfy { !cl.isHostResident($0.m) && !cl.isHostResident($0.v) })
    }

    @Test("OpenCL paged AdamW holds two tensors' moments on the device (staging for the largest), AdamW all of them")
    func deviceBytes() throws {
        let paged = try OptimizerCase.run(.pagedAdamW, on: cl, steps: 1).optimizer
        let plain = try OptimizerCase.run(.adamw, on: cl, steps: 1).optimizer
        #expect(paged.stateDeviceBytes == 2 * 2 * OptimizerCase.largest * 4)
        #expect(plain.stateDeviceBytes == OptimizerCase.shapes.reduce(0) { $0 + 2 * 4 * $1.reduce(1, *) })
        #expect(paged.stateDeviceBytes < plain.stateDeviceBytes)
    }

    @Test("OpenCL paged AdamW on a single tensor (one staging pair used) equals AdamW")
    func singleTensor() throws {
        let cl = try cl
        var results: [[UInt32]] = []
        for kind in [Optimizer.Kind.adamw, .pagedAdamW] {
            let p = TrainableParameter(name: "w", value: try cl.upload(randomValues(300, seed: 1), shape: [300]),
                                       gradient: try cl.upload(randomValues(300, seed: 2), shape: [300]))
            let optimizer = try Optimizer(kind, parameters: [p])
            for _ in 0..<3 { try optimizer.update(learningRate: 0.05) }
            results.append(try (p.value.toArray() + optimizer.moments[0].m.toArray() + optimizer.moments[0].v.toArray()).map(\.bitPattern))
        }
        #expect(results[0] == results[1])
    }

    @Test("OpenCL training resumes an adamw checkpoint as paged_adamw and back, with AdamW's losses bit for bit")
    func checkpoints() throws {
        let run = try OptimizerCase.checkpointRoundTrips(on: cl)
        #expect(run.whole[.adamw]! == run.whole[.pagedAdamW]!)
        #expect(run.resumed.count == 4)
        for (written, resumedAs, losses) in run.resumed {
            #expect(losses == Array(run.whole[.adamw]![4...]), "\(written.rawValue) resumed as \(resumedAs.rawValue)")
        }
    }

    @Test("OpenCL transfers copy host-resident tensors to the device and back, ordered against the ops around them")
    func transfers() throws {
        let cl = try cl
        let host = try cl.hostResidentZeros([1000])
        #expect(try cl.isHostResident(host) && host.toArray().allSatisfy { $0 == 0 })
        let values = randomValues(1000, seed: 7)
        let device = try cl.upload(values, shape: [1000])
        // An op queued before the transfer (the doubling) must be in what it copies.
        try cl.axpy(Axpy(alpha: 1, x: device, y: device))
        let toHost = try cl.beginTransfer([(device, host)])
        try cl.awaitTransfer(toHost)
        #expect(try host.toArray() == values.map { 2 * $0 })
        let back = try cl.zeros([1000])
        let toDevice = try cl.beginTransfer([(host, back)])
        try cl.awaitTransfer(toDevice)
        try cl.axpy(Axpy(alpha: 1, x: back, y: back))
        #expect(try back.toArray() == values.map { 4 * $0 })
        #expect(throws: LoRAError.self) { try cl.beginTransfer([(host, try cl.zeros([999]))]) }
        #expect(throws: LoRAError.self) { try cl.beginTransfer([(host, try CPUBackend.shared.zeros([1000]))]) }
    }
}
