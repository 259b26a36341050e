// Every OpenCL op against the CPU op (the oracle) on awkward shapes. Test names start with "OpenCL" so the
// CI log can count how many ran on an OpenCL device; they skip, with the reason, where none exists.
import Foundation
import LoRATestSupport
@testable import LoRAOpenCL
import SwiftLoRA
import Testing

@Suite("OpenCL ops", .enabled(if: TestDevices.runOpenCL, "\(TestDevices.skipReason)"))
struct OpenCLOpsTests {
    var cl: OpenCLBackend { get throws { try TestDevices.openCL.get() } }
    let cpu = CPUBackend.shared

    @Test("OpenCL GEMM kernel (matmul.cl) matches the CPU", arguments: GEMMCase.awkward.indices)
    func gemmKernel(_ index: Int) throws {
        let c = GEMMCase.awkward[index]
        #expect(firstMismatch(try c.run(on: cl, engine: .kernel), try c.run(on: cpu), atol: 1e-4, rtol: 1e-4) == nil, "\(c)")
    }

    @Test("OpenCL GEMM through CLBlast matches the CPU", .enabled(if: OpenCL.isCLBlastAvailable, "CLBlast not installed"),
          arguments: GEMMCase.awkward.indices)
    func gemmCLBlast(_ index: Int) throws {
        let c = GEMMCase.awkward[index]
        #expect(firstMismatch(try c.run(on: cl, engine: .clblast), try c.run(on: cpu), atol: 1e-4, rtol: 1e-4) == nil, "\(c)")
    }

    @Test("OpenCL GEMM engine is chosen by measurement: the faster measured one, else the kernel or LORA_GEMM's")
    func gemmEngineChoice() throws {
        let choice = try cl.gemmEngineChoice()
        if let forced = ProcessInfo.processInfo.environment["LORA_GEMM"], !forced.isEmpty {
            #expect(choice.engine.rawValue == forced && choice.kernelGFLOPS == nil && choice.clblastGFLOPS == nil, "\(choice)")
        } else if try !cl.hasCLBlast {
            #expect(choice.engine == .kernel && choice.clblastGFLOPS == nil, "\(choice)")
        } else {
            let own = try #require(choice.kernelGFLOPS, "\(choice)")
            if let blast = choice.clblastGFLOPS {
                #expect(own > 0 && blast > 0, "\(choice)")
                #expect(choice.engine == (blast > own ? .clblast : .kernel), "\(choice)")
            } else {
                #expect(choice.engine == .kernel && choice.reason.hasPrefix("CLBlast failed"), "\(choice)")
            }
        }
        let c = GEMMCase(m: 9, n: 21, k: 33, transposeB: true)
        #expect(firstMismatch(try c.run(on: cl), try c.run(on: cpu), atol: 1e-4) == nil, "\(choice)")
    }

    @Test("OpenCL GEMM engine rule: LORA_GEMM wins, no CLBlast means the kernel, else the faster measured engine")
    func gemmEngineRule() throws {
        struct Failure: Error {}
        func measured(_ kernel: Double, _ clblast: Double?) -> (GEMMEngine) throws -> Double {
            { engine in
                if engine == .kernel { return kernel }
                guard let clblast else { throw Failure() }
                return clblast
            }
        }
        let unmeasured: (GEMMEngine) throws -> Double = { engine in Issue.record("measured \(engine)"); return 0 }
        #expect(try GEMMEngineChoice.choose(forced: "kernel", clblastLoaded: true, gflops: unmeasured)
            == GEMMEngineChoice(engine: .kernel, reason: "LORA_GEMM=kernel"))
        #expect(try GEMMEngineChoice.choose(forced: "clblast", clblastLoaded: true, gflops: unmeasured).engine == .clblast)
        #expect(throws: OpenCLError.self) { try GEMMEngineChoice.choose(forced: "clblast", clblastLoaded: false, gflops: unmeasured) }
        #expect(throws: LoRAError.self) { try GEMMEngineChoice.choose(forced: "blas", clblastLoaded: true, gflops: unmeasured) }
        #expect(try GEMMEngineChoice.choose(forced: nil, clblastLoaded: false, gflops: unmeasured).engine == .kernel)
        let faster = try GEMMEngineChoice.choose(forced: nil, clblastLoaded: true, gflops: measured(10, 25))
        #expect(faster.engine == .clblast && faster.kernelGFLOPS == 10 && faster.clblastGFLOPS == 25)
        #expect(try GEMMEngineChoice.choose(forced: nil, clblastLoaded: true, gflops: measured(30, 25)).engine == .kernel)
        let failed = try GEMMEngineChoice.choose(forced: nil, clblastLoaded: true, gflops: measured(30, nil))
        #expect(failed.engine == .kernel && failed.kernelGFLOPS == 30 && failed.clblastGFLOPS == nil)
    }

    @Test("OpenCL softmax (softmax.cl) matches the CPU",
          arguments: [([1, 1], false, Float(1)), ([3, 7], false, 0.5), ([2, 5, 37, 37], true, 0.125),
                      ([4, 13, 29], true, 1), ([3, 29, 13], true, 2), ([2, 1000], false, 1)])
    func softmax(shape: [Int], causal: Bool, scale: Float) throws {
        let values = randomValues(shape.reduce(1, *), seed: 5).map { $0 * 6 }
        func run(_ b: any Backend) throws -> [Float] {
            let x = try b.upload(values, shape: shape), y = try b.zeros(shape)
            try b.softmax(Softmax(x: x, y: y, scale: scale, causal: causal))
            return try y.toArray()
        }
        #expect(firstMismatch(try run(cl), try run(cpu), atol: 1e-6, rtol: 1e-5) == nil)
    }

    @Test("OpenCL softmax backward matches the CPU (causal: masked dy is never read)",
          arguments: [([1, 1], false), ([3, 7], false), ([2, 3, 17, 17], false), ([2, 3, 17, 17], true), ([5, 129], false),
                      ([3, 20, 37], true)])
    func softmaxBackward(shape: [Int], causal: Bool) throws {
        let count = shape.reduce(1, *)
        let (tq, tk) = (shape[shape.count - 2], shape[shape.count - 1])
        let xv = randomValues(count, seed: 8)
        // Causal: NaN where the mask hides dy (as a `.lowerC` GEMM may leave it).
        let dyv = randomValues(count, seed: 9).enumerated().map { i, v in
            causal && (i % tk) > (i / tk) % tq + tk - tq ? Float.nan : v
        }
        func run(_ b: any Backend) throws -> [Float] {
            let x = try b.upload(xv, shape: shape), y = try b.zeros(shape), dx = try b.zeros(shape)
            try b.softmax(Softmax(x: x, y: y, scale: 0.3, causal: shape.count > 2))
            try b.softmaxBackward(SoftmaxBackward(y: y, dy: b.upload(dyv, shape: shape), dx: dx, scale: 0.3, causal: causal))
            return try dx.toArray()
        }
        let (gpu, host) = (try run(cl), try run(cpu))
        #expect(firstMismatch(gpu, host, atol: 1e-6, rtol: 1e-4) == nil)
        #expect(!host.contains { $0.isNaN })
    }

    @Test("OpenCL LoRA projection matches the CPU, fused (lora.cl) and as two GEMMs",
          arguments: [(1, 1, 1, 1), (1, 7, 5, 1), (3, 13, 17, 2), (9, 64, 96, 8), (5, 31, 300, 16), (2, 3, 5, 3), (4, 70, 90, 65), (3, 40, 200, 33), (2, 300, 301, 257)])
    func loraProjection(rows: Int, inF: Int, outF: Int, rank: Int) throws {
        for path in LoRAPath.allCases { try loraProjection(rows: rows, inF: inF, outF: outF, rank: rank, path: path) }
    }

    func loraProjection(rows: Int, inF: Int, outF: Int, rank: Int, path: LoRAPath) throws {
        let (xv, av, bv, yv) = (randomValues(rows * inF, seed: 1), randomValues(rank * inF, seed: 2),
                                randomValues(outF * rank, seed: 3), randomValues(rows * outF, seed: 4))
        func run(_ b: any Backend, saveU: Bool) throws -> ([Float], [Float]) {
            let y = try b.upload(yv, shape: [rows, outF]), u = try b.zeros([rows, rank])
            let op = try LoRAProjection(
                x: b.upload(xv, shape: [rows, inF]), a: b.upload(av, shape: [rank, inF]),
                b: b.upload(bv, shape: [outF, rank]), scale: 0.75, y: y, u: saveU ? u : nil)
            if let cl = b as? OpenCLBackend { try cl.loraProject(op, path: path) } else { try b.loraProject(op) }
            return (try y.toArray(), try u.toArray())
        }
        let (expectedY, expectedU) = try run(cpu, saveU: true)
        let (y, u) = try run(cl, saveU: true)
        #expect(firstMismatch(y, expectedY, atol: 1e-4, rtol: 1e-4) == nil, "\(path)")
        #expect(firstMismatch(u, expectedU, atol: 1e-4, rtol: 1e-4) == nil, "\(path)")
        #expect(firstMismatch(try run(cl, saveU: false).0, expectedY, atol: 1e-4, rtol: 1e-4) == nil, "\(path)")
    }

    @Test("OpenCL bias add and axpy (elementwise.cl), fill and copy match the CPU")
    func elementwise() throws {
        let (yv, bv) = (randomValues(7 * 13, seed: 1), randomValues(13, seed: 2))
        func run(_ b: any Backend) throws -> [Float] {
            let y = try b.upload(yv, shape: [7, 13])
            try b.addBias(BiasAdd(bias: b.upload(bv, shape: [13]), y: y))
            try b.axpy(Axpy(alpha: -0.3, x: b.upload(randomValues(91, seed: 3), shape: [91]), y: y))
            let z = try b.zeros([91])
            try b.copy(y, to: z)
            let w = try b.zeros([3])
            try b.fill(w, with: 2.5)
            return try z.toArray() + w.toArray()
        }
        // OpenCL C may contract y + a·x into one fma, so allow the last bit.
        #expect(firstMismatch(try run(cl), try run(cpu), atol: 1e-6, rtol: 1e-6) == nil)
    }

    @Test("OpenCL buffers are recycled through the pool")
    func bufferPool() throws {
        // A backend of its own, so other tests' buffers do not move the pool's counters.
        let backend = try OpenCLBackend(index: cl.device.index)
        let bytes = BufferPool.sizeClass(777_777 * 4)
        _ = try backend.zeros([777_777])
        #expect(backend.pool.cachedBytes == bytes)
        let reused = try backend.zeros([777_000])  // same size class
        #expect(backend.pool.cachedBytes == 0)
        #expect(reused.storage.byteCount == bytes)
        #expect(try reused.toArray().allSatisfy { $0 == 0 })
        _ = try backend.zeros([100])
        #expect(backend.cachedMemoryBytes == BufferPool.sizeClass(400))
        backend.releaseCachedMemory()
        #expect(backend.cachedMemoryBytes == 0)
    }

    @Test("OpenCL allocation beyond the device's largest buffer is an out-of-memory error")
    func outOfMemory() throws {
        let backend = try cl
        let count = backend.device.maxAllocationBytes / 4 + 1
        guard count <= Int(Int32.max) else { return }  // such a device's limit is beyond what a tensor may hold
        let error = #expect(throws: OpenCLError.self) { try backend.zeros([count]) }
        #expect(error?.description.contains("out of device memory") == true)
    }

    @Test("OpenCL pool size classes waste at most 1/8")
    func sizeClasses() {
        for bytes in [1, 4, 255, 256, 257, 1000, 4096, 4097, 1 << 20, (1 << 20) + 1, 123_456_789] {
            let c = BufferPool.sizeClass(bytes)
            #expect(c >= bytes && (c <= 256 || Double(c) <= Double(bytes) * 1.125 + 256), "\(bytes) -> \(c)")
        }
    }

    @Test("OpenCL rejects a tensor from another device")
    func wrongDevice() throws {
        let x = try cpu.zeros([2, 2])
        #expect(throws: LoRAError.self) { try cl.fill(x, with: 1) }
        let op = try Softmax(x: x, y: x)
        #expect(throws: LoRAError.self) { try cl.softmax(op) }
    }
}
