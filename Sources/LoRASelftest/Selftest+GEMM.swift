// The GEMM checks: every transpose pair, batched (own matrices, a shared A, a shared B), padded leading dimensions,
// offsets, alpha and beta, the bias epilogue, the causal triangles, and bfloat16/float16 operands, through both
// engines (Kernels/matmul.cl's pack_b + gemm, and CLBlast where it is loaded), plus the engine the device picks.
// Shapes straddle the kernel's tiles (TM 12 or 4 rows, TN 16 or 32 columns by device kind): 1, tile ± 1, primes.
// Bound: componentwise 2γ_{k+2} against |alpha|·|op(A)|·|op(B)| + |beta|·|C| + |bias| (Comparison.swift).
import SwiftLoRA

/// One GEMM problem with awkward layouts. C's padding must come back untouched; entries a `.lowerC` triangle
/// leaves unspecified read as 0 on both sides.
struct GEMMProblem: Sendable, CustomStringConvertible {
    var m: Int, n: Int, k: Int, batch = 1
    var transposeA = false, transposeB = false
    var alpha: Float = 1, beta: Float = 0
    /// Extra elements per stored row, and before the first matrix.
    var pad = 0, offset = 0
    /// One A (or B) for the whole batch (stride 0).
    var sharedA = false, sharedB = false
    var triangle: GEMM.Triangle?
    var bias = false
    var typeA = DType.float32, typeB = DType.float32

    var description: String {
        var text = "\(m)x\(n)x\(k)"
        if batch > 1 { text += " batch \(batch)" + (sharedA ? " shared A" : "") + (sharedB ? " shared B" : "") }
        text += " \(transposeA ? "T" : "N")\(transposeB ? "T" : "N")"
        if alpha != 1 || beta != 0 { text += " alpha \(alpha) beta \(beta)" }
        if pad > 0 || offset > 0 { text += " pad \(pad) offset \(offset)" }
        if let triangle { text += " \(triangle)" }
        if bias { text += " bias" }
        if typeA != .float32 || typeB != .float32 { text += " A \(typeA) B \(typeB)" }
        return text
    }

    /// Whether CLBlast can run it (float32 operands only).
    var isFloat32: Bool { typeA == .float32 && typeB == .float32 }

    struct Layout { let ld: Int, stride: Int, count: Int }

    func layout(rows: Int, cols: Int, shared: Bool) -> Layout {
        let ld = cols + pad
        let stride = shared ? 0 : rows * ld + 3
        return Layout(ld: ld, stride: stride, count: offset + (batch - 1) * stride + rows * ld)
    }

    var layouts: (a: Layout, b: Layout, c: Layout) {
        (layout(rows: transposeA ? k : m, cols: transposeA ? m : k, shared: sharedA),
         layout(rows: transposeB ? n : k, cols: transposeB ? k : n, shared: sharedB),
         layout(rows: m, cols: n, shared: false))
    }

    /// A, B (rounded to their dtypes), C's prior contents and the bias. op(A) is zero where a lowerA/upperA triangle
    /// says so.
    func inputs(seed: UInt64) -> (a: [Float], b: [Float], c: [Float], bias: [Float]) {
        let l = layouts
        var a = randomValues(l.a.count, seed: seed)
        let isZero: (Int, Int) -> Bool = switch triangle {
        case .lowerA(let o): { i, p in p > i + o }
        case .upperA(let o): { i, p in p < i - o }
        default: { _, _ in false }
        }
        for b in 0..<batch {
            for i in 0..<m {
                for p in 0..<k where isZero(i, p) {
                    a[offset + b * l.a.stride + (transposeA ? p * l.a.ld + i : i * l.a.ld + p)] = 0
                }
            }
        }
        return (rounded(a, to: typeA), rounded(randomValues(l.b.count, seed: seed + 1), to: typeB),
                randomValues(l.c.count, seed: seed + 2), randomValues(n, seed: seed + 3, bound: 3))
    }

    /// C's whole buffer after the GEMM on `backend` (through `engine` on an OpenCL backend, nil: its default choice).
    /// `magnitude`: every input, alpha and beta replaced by its absolute value and the operands stored as float32
    /// (the CPU run that gives each element's Σ|terms|).
    func run(on backend: any Backend, seed: UInt64, engine: GEMMEngine? = nil, magnitude: Bool = false) throws -> [Float] {
        let l = layouts
        var (av, bv, cv, biasValues) = inputs(seed: seed)
        if magnitude { (av, bv, cv, biasValues) = (av.map(abs), bv.map(abs), cv.map(abs), biasValues.map(abs)) }
        let a = try backend.upload(av, as: magnitude ? .float32 : typeA, shape: [l.a.count])
        let b = try backend.upload(bv, as: magnitude ? .float32 : typeB, shape: [l.b.count])
        let c = try backend.upload(cv, shape: [l.c.count])
        let op = try GEMM(
            m: m, n: n, k: k, batch: batch, alpha: magnitude ? abs(alpha) : alpha,
            a: GEMMOperand(a, offset: offset, ld: l.a.ld, batchStride: l.a.stride), transposeA: transposeA,
            b: GEMMOperand(b, offset: offset, ld: l.b.ld, batchStride: l.b.stride), transposeB: transposeB,
            beta: magnitude ? abs(beta) : beta, c: GEMMOperand(c, offset: offset, ld: l.c.ld, batchStride: l.c.stride),
            bias: bias ? backend.upload(biasValues, shape: [n]) : nil, triangle: triangle)
        if let engine, let cl = backend as? OpenCLBackend { try cl.gemm(op, engine: engine) } else { try backend.gemm(op) }
        return maskingUnspecified(try backend.download(c))
    }

    /// C's buffer with the entries above a `.lowerC` diagonal (unspecified) set to 0.
    func maskingUnspecified(_ values: [Float]) -> [Float] {
        guard case .lowerC(let diagonal) = triangle else { return values }
        let l = layouts.c
        var out = values
        for b in 0..<batch {
            for i in 0..<m { for j in 0..<n where j > i + diagonal { out[offset + b * l.stride + i * l.ld + j] = 0 } }
        }
        return out
    }

    /// Device against CPU, componentwise within 2γ_{k+2} of the magnitudes.
    func compare(_ selftest: Selftest, seed: UInt64, engine: GEMMEngine?) throws -> Comparison {
        let device = try run(on: selftest.device, seed: seed, engine: engine)
        let reference = try run(on: selftest.cpu, seed: seed)
        let magnitude = try run(on: selftest.cpu, seed: seed, magnitude: true)
        return Comparison.measure(device, reference, magnitude: .componentwise(magnitude), tolerance: sumBound(k + 2),
                                  label: description)
    }
}

extension Selftest {
    /// Shapes for one transpose pair: 1×1×1, tile edges ± 1, primes, batches with own, shared A and shared B
    /// matrices, padding and offsets, alpha and beta (beta 0 must ignore C's NaN-free garbage, beta ≠ 0 reads it).
    static func gemmShapes(transposeA ta: Bool, transposeB tb: Bool) -> [GEMMProblem] {
        [
            GEMMProblem(m: 1, n: 1, k: 1, transposeA: ta, transposeB: tb),
            GEMMProblem(m: 13, n: 17, k: 5, transposeA: ta, transposeB: tb, alpha: 0.5, beta: 2, pad: 3, offset: 5),
            GEMMProblem(m: 37, n: 33, k: 129, batch: 3, transposeA: ta, transposeB: tb, beta: -1, pad: 1),
            GEMMProblem(m: 25, n: 47, k: 64, batch: 2, transposeA: ta, transposeB: tb, alpha: 1.5, sharedA: true),
            GEMMProblem(m: 11, n: 65, k: 31, batch: 3, transposeA: ta, transposeB: tb, beta: 0.5, pad: 2, sharedB: true),
            GEMMProblem(m: 49, n: 1, k: 11, transposeA: ta, transposeB: tb),
            GEMMProblem(m: 1, n: 53, k: 2, transposeA: ta, transposeB: tb, beta: 1),
            GEMMProblem(m: 100, n: 67, k: 300, transposeA: ta, transposeB: tb, alpha: 0.25),
        ]
    }

    /// Causal attention's triangles (scores, probabilities times values, and transposes) across tile edges, with
    /// and without a diagonal offset (a KV cache's).
    static let gemmTriangles: [GEMMProblem] = [
        GEMMProblem(m: 37, n: 45, k: 19, batch: 2, transposeB: true, beta: 0.5, pad: 2, triangle: .lowerC(offset: 0)),
        GEMMProblem(m: 130, n: 133, k: 16, transposeB: true, triangle: .lowerC(offset: 3)),
        GEMMProblem(m: 37, n: 21, k: 37, batch: 2, beta: -1, pad: 1, triangle: .lowerA(offset: 0)),
        GEMMProblem(m: 130, n: 33, k: 133, triangle: .lowerA(offset: 3)),
        GEMMProblem(m: 37, n: 21, k: 37, batch: 2, transposeA: true, pad: 1, triangle: .upperA(offset: 0)),
        GEMMProblem(m: 130, n: 40, k: 130, transposeA: true, alpha: 2, triangle: .upperA(offset: 2)),
    ]

    /// A linear layer's bias added as C is stored: ragged tiles, beta, batches, several k blocks.
    static let gemmBiases: [GEMMProblem] = [
        GEMMProblem(m: 37, n: 45, k: 19, batch: 2, beta: 0.5, pad: 2, offset: 1, bias: true),
        GEMMProblem(m: 130, n: 64, k: 700, transposeB: true, alpha: 0.5, bias: true),
        GEMMProblem(m: 5, n: 200, k: 33, transposeA: true, bias: true),
    ]

    /// 16-bit operands (weights kept in their file's dtype), each transpose, either side, with bias and batches.
    static func gemmTyped(_ dtype: DType) -> [GEMMProblem] {
        var problems: [GEMMProblem] = []
        for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
            var weight = GEMMProblem(m: 37, n: 45, k: 70, transposeA: ta, transposeB: tb, beta: 0.5, pad: 1, bias: true)
            weight.typeB = dtype
            var both = GEMMProblem(m: 13, n: 33, k: 129, batch: 2, transposeA: ta, transposeB: tb, alpha: 0.5, offset: 3)
            (both.typeA, both.typeB) = (dtype, dtype)
            var activations = GEMMProblem(m: 25, n: 17, k: 40, batch: 2, transposeA: ta, transposeB: tb, sharedB: true)
            activations.typeA = dtype
            problems += [weight, both, activations]
        }
        return problems
    }

    /// A check over `problems` through `engine` (nil: the device's own choice).
    static func gemmCheck(_ name: String, _ problems: [GEMMProblem], engine: GEMMEngine?) -> Check {
        Check(name: name) { selftest in
            if engine == .clblast && !selftest.device.hasCLBlast {
                return .skipped("CLBlast is not loaded (install libclblast1, or LORA_CLBLAST=0 is set)")
            }
            return .compared(try problems.enumerated().map { index, problem in
                try problem.compare(selftest, seed: 1000 + UInt64(index) * 10, engine: engine)
            })
        }
    }

    static var gemmChecks: [Check] {
        var checks: [Check] = []
        for engine in GEMMEngine.allCases {
            for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
                let pair = "\(ta ? "T" : "N")\(tb ? "T" : "N")"
                checks.append(gemmCheck("gemm.\(engine.rawValue).\(pair)", gemmShapes(transposeA: ta, transposeB: tb), engine: engine))
            }
            checks.append(gemmCheck("gemm.\(engine.rawValue).triangles", gemmTriangles, engine: engine))
            checks.append(gemmCheck("gemm.\(engine.rawValue).bias", gemmBiases, engine: engine))
        }
        checks.append(gemmCheck("gemm.kernel.bfloat16", gemmTyped(.bfloat16), engine: .kernel))
        checks.append(gemmCheck("gemm.kernel.float16", gemmTyped(.float16), engine: .kernel))
        // The path every model takes: the engine the device measured (or LORA_GEMM chose), typed operands on the kernel.
        var mixed = GEMMProblem(m: 64, n: 96, k: 128, transposeB: true, bias: true)
        mixed.typeB = .bfloat16
        checks.append(gemmCheck("gemm.default", [GEMMProblem(m: 256, n: 96, k: 200, beta: 1), mixed], engine: nil))
        return checks
    }
}
