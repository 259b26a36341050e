// The LoRA path and NF4: `y += s·(x·Aᵀ)·Bᵀ` through the fused kernel (Kernels/lora.cl, what GPUs take), the two-GEMM
// path (what CPU devices and ranks past the fused kernel's local memory take) and the device's default; QLoRA's
// quantized GEMM through both nf4.cl kernels (work-group tiles for GPUs, one-item strips for CPU devices) and the
// default, and the full dequantization.
// Bounds: componentwise, from Σ|terms| computed on the CPU over absolute values: the LoRA path is two chained sums
// (in, then rank + 2 terms), so 2γ_{in+r+2}; a quantized GEMM is a GEMM over W's dequantized elements, which both
// devices compute bit for bit (nf4.cl turns FP_CONTRACT off), so 2γ_{k+2}. The dequantization itself must be exact.
import Foundation
import SwiftLoRA

struct LoRAProblem: Sendable, CustomStringConvertible {
    let rows: Int, inFeatures: Int, outFeatures: Int, rank: Int
    var saveU = true
    let scale: Float = 2

    var description: String { "\(rows) rows, \(inFeatures) → \(outFeatures), rank \(rank)" + (saveU ? ", u saved" : "") }

    /// (y, u) after the path on `backend` (u empty when not saved); `magnitude` runs it over absolute values.
    func run(on backend: any Backend, path: LoRAPath?, seed: UInt64, magnitude: Bool = false) throws -> [[Float]] {
        func values(_ count: Int, _ offset: UInt64) -> [Float] {
            let v = randomValues(count, seed: seed + offset)
            return magnitude ? v.map(abs) : v
        }
        let x = try backend.upload(values(rows * inFeatures, 0), shape: [rows, inFeatures])
        let a = try backend.upload(values(rank * inFeatures, 1), shape: [rank, inFeatures])
        let b = try backend.upload(values(outFeatures * rank, 2), shape: [outFeatures, rank])
        let y = try backend.upload(values(rows * outFeatures, 3), shape: [rows, outFeatures])
        let u = saveU ? try backend.upload(values(rows * rank, 4), shape: [rows, rank]) : nil
        let op = try LoRAProjection(x: x, a: a, b: b, scale: scale, y: y, u: u)
        if let path, let cl = backend as? OpenCLBackend { try cl.loraProject(op, path: path) } else { try backend.loraProject(op) }
        return [try y.toArray(), try u?.toArray() ?? []]
    }
}

/// A random NF4 weight and a quantized GEMM over it.
struct NF4Problem: Sendable, CustomStringConvertible {
    /// Rows of A (and C).
    let m: Int
    /// The weight's stored shape: `[n, k]` with `transposeW` (a linear layer's forward), else `[k, n]`.
    let rows: Int, columns: Int
    let transposeW: Bool
    var blocksize = 64
    /// Double quantization in groups of this many absmax codes; nil: float32 absmax.
    var nested: Int? = 256
    var dtype = DType.float32
    var elementDType: DType? = nil
    var alpha: Float = 1, beta: Float = 0
    var bias = false

    var k: Int { transposeW ? columns : rows }
    var n: Int { transposeW ? rows : columns }
    var blockCount: Int { (rows * columns + blocksize - 1) / blocksize }

    var description: String {
        "\(m) rows × W [\(rows), \(columns)]\(transposeW ? "ᵀ" : "") blocks of \(blocksize), "
            + (nested.map { "double-quantized by \($0)" } ?? "float32 absmax") + ", \(dtype)"
            + (elementDType.map { " elements as \($0)" } ?? "") + (alpha != 1 || beta != 0 ? " alpha \(alpha) beta \(beta)" : "")
            + (bias ? " bias" : "")
    }

    /// The packed weight on `backend`, from `seed`.
    func weight(on backend: any Backend, seed: UInt64) throws -> NF4Weight {
        var g = SeededGenerator(seed: seed)
        let codes = (0..<(rows * columns + 1) / 2).map { _ in UInt8.random(in: 0...255, using: &g) }
        let absmax: NF4Weight.Absmax
        if let nested {
            let absmaxCodes = (0..<blockCount).map { _ in UInt8.random(in: 0...255, using: &g) }
            let nestedMap = (0..<256).map { _ in Float.random(in: -1...1, using: &g) }.sorted()
            let scales = (0..<((blockCount + nested - 1) / nested)).map { _ in Float.random(in: 0.001...0.5, using: &g) }
            absmax = .doubleQuantized(codes: try backend.upload(bytes: absmaxCodes), map: try backend.upload(nestedMap, shape: [256]),
                                      scales: try backend.upload(scales, shape: [scales.count]),
                                      offset: Float.random(in: 0.05...0.8, using: &g), blocksize: nested)
        } else {
            absmax = .float32(try backend.upload((0..<blockCount).map { _ in Float.random(in: 0.01...2, using: &g) }, shape: [blockCount]))
        }
        return try NF4Weight(rows: rows, columns: columns, blocksize: blocksize, codes: backend.upload(bytes: codes),
                             map: backend.upload(BitsAndBytesCodebook.nf4, shape: [16]), absmax: absmax, dtype: dtype)
    }

    /// C after the quantized GEMM on `backend` (through `kernel` on an OpenCL backend; nil: its default).
    func run(on backend: any Backend, kernel: NF4GEMMKernel?, seed: UInt64) throws -> [Float] {
        let w = try weight(on: backend, seed: seed)
        let a = try backend.upload(randomValues(m * k, seed: seed + 1), shape: [m, k])
        let c = try backend.upload(randomValues(m * n, seed: seed + 2), shape: [m, n])
        let op = try QuantizedGEMM(a: a, weight: w, c: c, transposeW: transposeW, alpha: alpha, beta: beta,
                                   bias: bias ? backend.upload(randomValues(n, seed: seed + 3), shape: [n]) : nil,
                                   elementDType: elementDType)
        if let kernel, let cl = backend as? OpenCLBackend { try cl.quantizedGEMM(op, kernel: kernel) } else { try backend.quantizedGEMM(op) }
        return try c.toArray()
    }

    /// W dequantized on `backend`.
    func dequantized(on backend: any Backend, seed: UInt64) throws -> [Float] {
        let w = try weight(on: backend, seed: seed)
        let out = try backend.empty([rows, columns])
        try backend.dequantizeNF4(NF4Dequantize(weight: w, destination: out))
        return try out.toArray()
    }

    /// Σ|terms| of every element of C, on the CPU: |alpha|·|A|·op(|W|) + |beta|·|C| + |bias|.
    func magnitude(_ cpu: CPUBackend, seed: UInt64) throws -> [Float] {
        let w = try dequantized(on: cpu, seed: seed).map(abs)
        let a = try cpu.upload(randomValues(m * k, seed: seed + 1).map(abs), shape: [m, k])
        let c = try cpu.upload(randomValues(m * n, seed: seed + 2).map(abs), shape: [m, n])
        try cpu.gemm(GEMM(m: m, n: n, k: k, alpha: abs(alpha), a: GEMMOperand(a, ld: k),
                          b: GEMMOperand(cpu.upload(w, shape: [rows, columns]), ld: columns), transposeB: transposeW,
                          beta: abs(beta), c: GEMMOperand(c, ld: n),
                          bias: bias ? cpu.upload(randomValues(n, seed: seed + 3).map(abs), shape: [n]) : nil))
        return try c.toArray()
    }
}

extension Selftest {
    static let loraProblems = [
        LoRAProblem(rows: 37, inFeatures: 70, outFeatures: 45, rank: 8),
        LoRAProblem(rows: 1, inFeatures: 129, outFeatures: 33, rank: 1),
        LoRAProblem(rows: 65, inFeatures: 300, outFeatures: 257, rank: 17, saveU: false),
        LoRAProblem(rows: 9, inFeatures: 64, outFeatures: 96, rank: 64),
        // Past the fused kernel's largest rank (256): the GEMMs run it whatever the path asked.
        LoRAProblem(rows: 5, inFeatures: 300, outFeatures: 270, rank: 260),
    ]

    static func loraCheck(_ name: String, path: LoRAPath?) -> Check {
        Check(name: name) { s in
            .compared(try loraProblems.enumerated().flatMap { index, problem in
                let seed = 7000 + UInt64(index) * 10
                let device = try problem.run(on: s.device, path: path, seed: seed)
                let cpu = try problem.run(on: s.cpu, path: nil, seed: seed)
                let magnitude = try problem.run(on: s.cpu, path: nil, seed: seed, magnitude: true)
                return [
                    Comparison.measure(device[0], cpu[0], magnitude: .componentwise(magnitude[0]),
                                       tolerance: sumBound(problem.inFeatures + problem.rank + 2), label: "\(problem) y"),
                    Comparison.measure(device[1], cpu[1], magnitude: .componentwise(magnitude[1]),
                                       tolerance: sumBound(problem.inFeatures), label: "\(problem) u"),
                ]
            })
        }
    }

    static let nf4Problems = [
        NF4Problem(m: 37, rows: 70, columns: 200, transposeW: true),
        NF4Problem(m: 65, rows: 130, columns: 67, transposeW: false, nested: nil, beta: 0.5, bias: true),
        NF4Problem(m: 1, rows: 33, columns: 129, transposeW: true, blocksize: 128, dtype: .bfloat16, bias: true),
        NF4Problem(m: 70, rows: 257, columns: 96, transposeW: true, dtype: .float16, elementDType: .float32, alpha: 0.5),
        NF4Problem(m: 33, rows: 64, columns: 100, transposeW: false, blocksize: 32, nested: 4, dtype: .bfloat16, beta: -1),
    ]

    static func nf4Check(_ name: String, kernel: NF4GEMMKernel?) -> Check {
        Check(name: name) { s in
            .compared(try nf4Problems.enumerated().map { index, problem in
                let seed = 8000 + UInt64(index) * 10
                let device = try problem.run(on: s.device, kernel: kernel, seed: seed)
                let cpu = try problem.run(on: s.cpu, kernel: nil, seed: seed)
                return Comparison.measure(device, cpu, magnitude: .componentwise(try problem.magnitude(s.cpu, seed: seed)),
                                          tolerance: sumBound(problem.k + 2), label: problem.description)
            })
        }
    }

    static var loraChecks: [Check] {
        [loraCheck("lora.fused", path: .fused), loraCheck("lora.gemm", path: .gemm), loraCheck("lora", path: nil)]
    }

    static var nf4Checks: [Check] {
        [nf4Check("nf4.gemm.tiles", kernel: .tiles), nf4Check("nf4.gemm.strips", kernel: .strips), nf4Check("nf4.gemm", kernel: nil),
         Check(name: "nf4.dequantize") { s in
             .compared(try nf4Problems.enumerated().map { index, problem in
                 let (device, cpu) = try s.both { try problem.dequantized(on: $0, seed: 8000 + UInt64(index) * 10) }
                 return Comparison.exact(device, cpu, label: "W [\(problem.rows), \(problem.columns)] \(problem.dtype)")
             })
         }]
    }
}
