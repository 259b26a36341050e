// OpenCL multi-LoRA, both paths (the per-row kernels of multi_lora.cl and the per-segment GEMMs), against the naive
// per-row reference. Test names start with "OpenCL" so CI counts them.
import LoRATestSupport
@testable import LoRAOpenCL
import SwiftLoRA
import Testing

@Suite("OpenCL multi-LoRA", .enabled(if: TestDevices.runOpenCL, "\(TestDevices.skipReason)"))
struct OpenCLMultiLoRATests {
    var cl: OpenCLBackend { get throws { try TestDevices.openCL.get() } }

    @Test("OpenCL multi-LoRA per-row kernels (multi_lora.cl) match the per-row reference", arguments: MultiLoRACase.cases.indices)
    func perRow(_ index: Int) throws {
        let c = MultiLoRACase.cases[index], cl = try cl
        #expect(firstMismatch(try c.run(on: cl) { try cl.multiLoRA($0, path: .perRow) }, c.reference(), atol: 1e-4, rtol: 1e-4) == nil, "\(c)")
    }

    @Test("OpenCL multi-LoRA per-segment GEMMs match the per-row reference", arguments: MultiLoRACase.cases.indices)
    func segments(_ index: Int) throws {
        let c = MultiLoRACase.cases[index], cl = try cl
        #expect(firstMismatch(try c.run(on: cl) { try cl.multiLoRA($0, path: .segments) }, c.reference(), atol: 1e-4, rtol: 1e-4) == nil, "\(c)")
    }

    @Test("OpenCL multi-LoRA's own choice of path matches the CPU", arguments: MultiLoRACase.cases.indices)
    func chosenPath(_ index: Int) throws {
        let c = MultiLoRACase.cases[index]
        #expect(firstMismatch(try c.run(on: cl), try c.run(on: CPUBackend.shared), atol: 1e-4, rtol: 1e-4) == nil, "\(c)")
    }
}
