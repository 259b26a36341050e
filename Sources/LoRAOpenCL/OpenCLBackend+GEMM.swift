// OpenCL GEMM through one of two engines: the register-blocked kernel in Kernels/matmul.cl, or CLBlast's
// SGEMM where libclblast is loaded. Which is faster depends on the device (CLBlast is untuned on PoCL), so
// the first GEMM measures both once on a 256³ problem and keeps the winner; `LORA_GEMM=kernel|clblast`
// overrides the measurement. CLBlast runs only all-float32 GEMMs: a bfloat16 or float16 A or B always runs the
// kernel, built with that operand's dtype (-D A_TYPE / B_TYPE), which widens it as it loads.
import Foundation
import LoRARuntime

/// Who runs an OpenCL GEMM.
public enum GEMMEngine: String, Sendable, CaseIterable {
    /// Kernels/matmul.cl.
    case kernel
    /// CLBlast's SGEMM.
    case clblast
}

/// The outcome of the one-time GEMM engine measurement.
public struct GEMMEngineChoice: Sendable, Equatable, CustomStringConvertible {
    public let engine: GEMMEngine
    /// The kernel's GFLOP/s on the 256³ problem; nil when nothing was measured (`LORA_GEMM` or no CLBlast decided).
    public let kernelGFLOPS: Double?
    /// CLBlast's GFLOP/s on the same problem; nil when it was not measured or failed.
    public let clblastGFLOPS: Double?
    /// Why: the measured GFLOP/s per engine, or the override or error that decided.
    public let reason: String
    public var description: String { "\(engine.rawValue) (\(reason))" }

    public init(engine: GEMMEngine, kernelGFLOPS: Double? = nil, clblastGFLOPS: Double? = nil, reason: String) {
        (self.engine, self.kernelGFLOPS, self.clblastGFLOPS, self.reason) = (engine, kernelGFLOPS, clblastGFLOPS, reason)
    }

    /// The rule: `LORA_GEMM` (`forced`) wins; without CLBlast the kernel runs unmeasured; otherwise both engines are
    /// measured (`gflops`) and the faster runs (the kernel on a tie, or when CLBlast fails).
    static func choose(forced: String?, clblastLoaded: Bool,
                       gflops: (GEMMEngine) throws -> Double) throws -> GEMMEngineChoice {
        if let forced {
            guard let engine = GEMMEngine(rawValue: forced) else {
                throw LoRAError.invalidArgument("LORA_GEMM=\(forced): expected kernel or clblast")
            }
            if engine == .clblast && !clblastLoaded {
                throw OpenCLError.libraryUnavailable(library: "libclblast.so.1", reason: "LORA_GEMM=clblast but CLBlast cannot be loaded")
            }
            return GEMMEngineChoice(engine: engine, reason: "LORA_GEMM=\(forced)")
        }
        guard clblastLoaded else { return GEMMEngineChoice(engine: .kernel, reason: "CLBlast not loaded") }
        let own = try gflops(.kernel)
        let blast: Double
        do { blast = try gflops(.clblast) } catch {
            return GEMMEngineChoice(engine: .kernel, kernelGFLOPS: own, reason: "CLBlast failed: \(error)")
        }
        let figures = String(format: "kernel %.1f vs CLBlast %.1f GFLOP/s at 256³", own, blast)
        return GEMMEngineChoice(engine: blast > own ? .clblast : .kernel, kernelGFLOPS: own, clblastGFLOPS: blast,
                                reason: figures)
    }
}

extension OpenCLBackend {
    public func gemm(_ op: GEMM) throws {
        try gemm(op, engine: Self.isFloat32(op) ? gemmEngineChoice().engine : .kernel)
    }

    /// Nothing to gain: the GEMM kernels stage tiles of B in local memory as they go (PackedWeight.swift).
    public func packWeight(_ weight: Tensor, transposed: Bool) throws -> Bool {
        try requireOwned("packWeight", weight)
        return false
    }

    /// Runs `op` with a given engine (tests and benchmarks compare them). CLBlast takes all-float32 GEMMs only.
    public func gemm(_ op: GEMM, engine: GEMMEngine) throws {
        try requireOwned(op)
        switch engine {
        case .kernel: try gemmWithKernel(op)
        case .clblast:
            guard Self.isFloat32(op) else {
                throw LoRAError.unsupportedDType("gemm: CLBlast's SGEMM takes float32 A and B, not A \(op.a.tensor.dtype) "
                    + "and B \(op.b.tensor.dtype) (the kernel engine takes them)")
            }
            try gemmWithCLBlast(op)
        }
    }

    /// Whether both operands are float32 (C always is).
    private static func isFloat32(_ op: GEMM) -> Bool { op.a.tensor.dtype == .float32 && op.b.tensor.dtype == .float32 }

    /// The engine this backend uses, measured on first call.
    public func gemmEngineChoice() throws -> GEMMEngineChoice {
        try lock.withLock {
            if let chosen = chosenGEMMEngine { return chosen }
            let choice = try measureGEMMEngines()
            chosenGEMMEngine = choice
            return choice
        }
    }

    /// Packs op(B) into contiguous strips (pack_b), then runs the register-tiled kernel over them.
    private func gemmWithKernel(_ op: GEMM) throws {
        // The tile per work-item and the work-group shape: KernelParameters' gemm.* (tuned, or the defaults: on a CPU
        // device (PoCL) a 12×32 tile is 24 of the 32 AVX-512 registers and one-item work-groups let the runtime hand
        // out row blocks in order, so consecutive blocks share a B strip in cache (measured: 0.82-0.87 of OpenBLAS
        // with the runtime's own work-group choice, 0.94-1.01 with one item); a GPU thread cannot hold 24 float16
        // accumulators without spilling: 4×16 there, work-groups left to the driver, until `lora tune` measures).
        let tile = kernelParameters.gemmTile(n: op.n)
        var options = "-D TRANS_A=\(op.transposeA ? 1 : 0) -D TRANS_B=\(op.transposeB ? 1 : 0) -D TM=\(tile.rows) -D TN=\(tile.cols)"
        // VW only when not the kernel's own default (16), so an untuned backend builds the programs it always built.
        if tile.vector != 16 { options += " -D VW=\(tile.vector)" }
        // Typed operands only: an all-float32 GEMM keeps the option set (and the cached program) it always had.
        if !Self.isFloat32(op) { options += " -D A_TYPE=\(op.a.tensor.dtype.kernelCode) -D B_TYPE=\(op.b.tensor.dtype.kernelCode)" }
        let strips = (op.n + tile.cols - 1) / tile.cols
        // A B shared by the whole batch (stride 0) is packed once.
        let packedBatches = op.b.batchStride == 0 ? 1 : op.batch
        let packedStride = strips * tile.cols * op.k
        let packed = try empty([packedBatches, packedStride])
        let triangle = Self.encode(op.triangle)
        try launch(try kernel("pack_b", file: "matmul", options: options), global: [strips * tile.cols, op.k, packedBatches], [
            .int(op.n), .int(op.k), .tensor(op.b.tensor), .int(op.b.offset), .int(op.b.ld), .int(op.b.batchStride),
            .tensor(packed),
        ])
        let gemmKernel = try kernel("gemm", file: "matmul", options: options)
        // A group wider than this kernel allows (its registers) shrinks to the largest power of two that fits.
        let group = tile.group == 0 ? 0 : min(tile.group, KernelParameter.powersOfTwo(upTo: try maxWorkGroupSize(gemmKernel)).last ?? 1)
        try launch(gemmKernel, global: [(op.m + tile.rows - 1) / tile.rows, strips, op.batch],
                   local: group == 0 ? nil : [group, 1, 1], [
            .int(op.m), .int(op.n), .int(op.k), .float(op.alpha),
            .tensor(op.a.tensor), .int(op.a.offset), .int(op.a.ld), .int(op.a.batchStride),
            .tensor(packed), .long(packedBatches == 1 ? 0 : packedStride),
            .float(op.beta),
            .tensor(op.c.tensor), .int(op.c.offset), .int(op.c.ld), .int(op.c.batchStride),
            .int(triangle.kind), .int(triangle.offset),
            .tensor(op.bias ?? op.c.tensor), .int(op.bias == nil ? 0 : 1),  // C stands in for an absent bias
        ])
    }

    /// The kernel's encoding of a GEMM triangle: kind 0 none, 1 lowerC, 2 lowerA, 3 upperA.
    private static func encode(_ triangle: GEMM.Triangle?) -> (kind: Int, offset: Int) {
        switch triangle {
        case nil: (0, 0)
        case .lowerC(let offset): (1, offset)
        case .lowerA(let offset): (2, offset)
        case .upperA(let offset): (3, offset)
        }
    }

    private func gemmWithCLBlast(_ op: GEMM) throws {
        guard let clblast else {
            throw OpenCLError.libraryUnavailable(library: "libclblast.so.1", reason: "CLBlast is not loaded for \(name)")
        }
        let ta = op.transposeA ? CLBlast.transposeYes : CLBlast.transposeNo
        let tb = op.transposeB ? CLBlast.transposeYes : CLBlast.transposeNo
        let (a, b, c) = (buffer(op.a.tensor), buffer(op.b.tensor), buffer(op.c.tensor))
        try lock.withLock {
            var queueHandle: CLHandle? = queue.handle
            if op.batch == 1 || op.a.batchStride == 0 || op.b.batchStride == 0 {
                // A shared operand (stride 0) is not a strided batch in CLBlast's sense: one call per entry.
                for i in 0..<op.batch {
                    try CLBlast.check(clblast.sgemm(
                        CLBlast.rowMajor, ta, tb, op.m, op.n, op.k, op.alpha,
                        a, op.a.offset + i * op.a.batchStride, op.a.ld,
                        b, op.b.offset + i * op.b.batchStride, op.b.ld, op.beta,
                        c, op.c.offset + i * op.c.batchStride, op.c.ld, &queueHandle, nil), "CLBlastSgemm")
                }
            } else {
                try CLBlast.check(clblast.sgemmStridedBatched(
                    CLBlast.rowMajor, ta, tb, op.m, op.n, op.k, op.alpha,
                    a, op.a.offset, op.a.ld, op.a.batchStride, b, op.b.offset, op.b.ld, op.b.batchStride, op.beta,
                    c, op.c.offset, op.c.ld, op.c.batchStride, op.batch, &queueHandle, nil), "CLBlastSgemmStridedBatched")
            }
        }
        // CLBlast has no bias epilogue: the bias is added to C's rows in a pass of its own.
        if let bias = op.bias { try addBias(bias, to: op.c, rows: op.m, batch: op.batch) }
    }

    /// Times both engines on a 256³ GEMM (one warm-up, median of three) and picks the faster (`GEMMEngineChoice.choose`).
    private func measureGEMMEngines() throws -> GEMMEngineChoice {
        try GEMMEngineChoice.choose(forced: environment("LORA_GEMM"), clblastLoaded: clblast != nil) { engine in
            let n = 256
            let values = (0..<(n * n)).map { Float($0 % 7) - 3 }
            let (a, b, c) = (try upload(values, shape: [n, n]), try upload(values, shape: [n, n]), try empty([n, n]))
            let op = try GEMM(a: a, b: b, c: c)
            try gemm(op, engine: engine)
            try synchronize()
            var times: [Double] = []
            for _ in 0..<3 {
                let start = DispatchTime.now().uptimeNanoseconds
                try gemm(op, engine: engine)
                try synchronize()
                times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
            }
            return 2 * Double(n * n * n) / times.sorted()[1] / 1e9
        }
    }
}
