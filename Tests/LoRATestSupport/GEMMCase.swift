// A GEMM problem with awkward layouts (padded leading dimensions, offsets, batch strides) that can run on any
// backend and against a naive Double reference. C's padding must come back untouched. With a triangle, op(A) is
// generated zero where the triangle says so, and C's entries a `.lowerC` triangle leaves unspecified read as 0.
import SwiftLoRA

public struct GEMMCase: Sendable, CustomStringConvertible {
    public var m: Int, n: Int, k: Int, batch: Int = 1
    public var transposeA = false, transposeB = false
    public var alpha: Float = 1, beta: Float = 0
    /// Extra elements per row (ld = cols + pad) and before the first matrix.
    public var pad = 0, offset = 0
    /// Share A across the batch (stride 0).
    public var sharedA = false
    public var triangle: GEMM.Triangle?
    /// Add a bias row (the epilogue).
    public var bias = false
    /// A's and B's dtypes; their values are rounded to them (and the float32 reference uses the rounded values).
    public var typeA = DType.float32, typeB = DType.float32

    public init(m: Int, n: Int, k: Int, batch: Int = 1, transposeA: Bool = false, transposeB: Bool = false,
                alpha: Float = 1, beta: Float = 0, pad: Int = 0, offset: Int = 0, sharedA: Bool = false,
                triangle: GEMM.Triangle? = nil, bias: Bool = false) {
        (self.m, self.n, self.k, self.batch, self.transposeA, self.transposeB) = (m, n, k, batch, transposeA, transposeB)
        (self.alpha, self.beta, self.pad, self.offset, self.sharedA) = (alpha, beta, pad, offset, sharedA)
        (self.triangle, self.bias) = (triangle, bias)
    }

    public var description: String {
        "\(m)x\(n)x\(k) batch \(batch) \(transposeA ? "T" : "N")\(transposeB ? "T" : "N") alpha \(alpha) beta \(beta) pad \(pad) offset \(offset)\(sharedA ? " sharedA" : "")\(triangle.map { " \($0)" } ?? "")\(bias ? " bias" : "")"
            + (typeA == .float32 && typeB == .float32 ? "" : " A \(typeA) B \(typeB)")
    }

    /// Stored rows and columns and the buffer size of each operand.
    struct Layout { let rows: Int, cols: Int, ld: Int, stride: Int, count: Int }

    func layout(rows: Int, cols: Int, shared: Bool = false) -> Layout {
        let ld = cols + pad
        let stride = shared ? 0 : rows * ld + 3
        return Layout(rows: rows, cols: cols, ld: ld, stride: stride, count: offset + (batch - 1) * stride + rows * ld)
    }

    var layouts: (a: Layout, b: Layout, c: Layout) {
        (layout(rows: transposeA ? k : m, cols: transposeA ? m : k, shared: sharedA),
         layout(rows: transposeB ? n : k, cols: transposeB ? k : n),
         layout(rows: m, cols: n))
    }

    /// The three input buffers (A, B, C's prior contents).
    public func inputs(seed: UInt64) -> (a: [Float], b: [Float], c: [Float]) {
        let l = layouts
        var a = randomValues(l.a.count, seed: seed)
        // op(A) zero outside its triangle, as GEMM.Triangle states it.
        let isZero: (Int, Int) -> Bool = switch triangle {
        case .lowerA(let o): { i, p in p > i + o }
        case .upperA(let o): { i, p in p < i - o }
        default: { _, _ in false }
        }
        for batchIndex in 0..<batch {
            for i in 0..<m {
                for p in 0..<k where isZero(i, p) {
                    a[offset + batchIndex * l.a.stride + (transposeA ? p * l.a.ld + i : i * l.a.ld + p)] = 0
                }
            }
        }
        return (typed(a, typeA).upcast, typed(randomValues(l.b.count, seed: seed + 1), typeB).upcast,
                randomValues(l.c.count, seed: seed + 2))
    }

    var biasValues: [Float] { randomValues(n, seed: 99).map { $0 * 3 } }

    /// Whether C's entry (i, j) is specified after the GEMM (not above a `.lowerC` diagonal).
    func isWanted(_ i: Int, _ j: Int) -> Bool {
        guard case .lowerC(let diagonalOffset) = triangle else { return true }
        return j <= i + diagonalOffset
    }

    /// C's buffer with the unspecified entries set to 0.
    func maskingUnspecified<T: BinaryFloatingPoint>(_ values: [T]) -> [T] {
        guard triangle != nil else { return values }
        let l = layouts
        var out = values
        for batchIndex in 0..<batch {
            for i in 0..<m { for j in 0..<n where !isWanted(i, j) { out[offset + batchIndex * l.c.stride + i * l.c.ld + j] = 0 } }
        }
        return out
    }

    /// Runs on `backend` (optionally with a specific OpenCL engine) and returns C's whole buffer. A and B are stored
    /// as `typeA` and `typeB`, or, with `upcast`, as float32 tensors of the same (rounded) values.
    public func run(on backend: any Backend, seed: UInt64 = 1, engine: GEMMEngine? = nil, upcast: Bool = false) throws -> [Float] {
        let l = layouts
        let (av, bv, cv) = inputs(seed: seed)
        let a = try uploadTyped(av, upcast ? .float32 : typeA, shape: [l.a.count], on: backend)
        let b = try uploadTyped(bv, upcast ? .float32 : typeB, shape: [l.b.count], on: backend)
        let c = try backend.upload(cv, shape: [l.c.count])
        let op = try GEMM(
            m: m, n: n, k: k, batch: batch, alpha: alpha,
            a: GEMMOperand(a, offset: offset, ld: l.a.ld, batchStride: l.a.stride), transposeA: transposeA,
            b: GEMMOperand(b, offset: offset, ld: l.b.ld, batchStride: l.b.stride), transposeB: transposeB,
            beta: beta, c: GEMMOperand(c, offset: offset, ld: l.c.ld, batchStride: l.c.stride),
            bias: bias ? backend.upload(biasValues, shape: [n]) : nil, triangle: triangle)
        if let engine, let cl = backend as? OpenCLBackend { try cl.gemm(op, engine: engine) } else { try backend.gemm(op) }
        return maskingUnspecified(try backend.download(c))
    }

    /// The naive triple loop in Double.
    public func reference(seed: UInt64 = 1) -> [Double] {
        let l = layouts
        let (a, b, c) = inputs(seed: seed)
        var out = c.map(Double.init)
        for batchIndex in 0..<batch {
            let (ab, bb, cb) = (offset + batchIndex * l.a.stride, offset + batchIndex * l.b.stride, offset + batchIndex * l.c.stride)
            for i in 0..<m {
                for j in 0..<n {
                    var sum = 0.0
                    for p in 0..<k {
                        let av = transposeA ? a[ab + p * l.a.ld + i] : a[ab + i * l.a.ld + p]
                        let bv = transposeB ? b[bb + j * l.b.ld + p] : b[bb + p * l.b.ld + j]
                        sum += Double(av) * Double(bv)
                    }
                    let prior = beta == 0 ? 0 : Double(beta) * Double(c[cb + i * l.c.ld + j])
                    out[cb + i * l.c.ld + j] = Double(alpha) * sum + prior + (bias ? Double(biasValues[j]) : 0)
                }
            }
        }
        return maskingUnspecified(out)
    }

    /// Shapes that stress edges: 1s, primes, non-multiples of the 8×16 tile, every transpose pair.
    public static let awkward: [GEMMCase] = {
        var cases: [GEMMCase] = []
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            cases.append(GEMMCase(m: 1, n: 1, k: 1, transposeA: ta, transposeB: tb))
            cases.append(GEMMCase(m: 7, n: 13, k: 5, transposeA: ta, transposeB: tb, alpha: 0.5, beta: 2, pad: 3, offset: 5))
            cases.append(GEMMCase(m: 17, n: 31, k: 129, batch: 3, transposeA: ta, transposeB: tb, beta: -1, pad: 1))
            cases.append(GEMMCase(m: 16, n: 32, k: 64, batch: 2, transposeA: ta, transposeB: tb, alpha: 1.5, sharedA: true))
            cases.append(GEMMCase(m: 37, n: 1, k: 11, transposeA: ta, transposeB: tb))
            cases.append(GEMMCase(m: 1, n: 53, k: 2, transposeA: ta, transposeB: tb, beta: 1))
        }
        cases.append(GEMMCase(m: 64, n: 48, k: 16))
        cases.append(GEMMCase(m: 100, n: 67, k: 300, transposeB: true, alpha: 0.25))
        // Causal attention's triangles: scores (q·kᵀ), probabilities times values, and their transposes, across
        // tile and cache-block edges, with a diagonal offset as a KV cache gives.
        cases.append(GEMMCase(m: 37, n: 45, k: 19, batch: 2, transposeB: true, beta: 0.5, pad: 2, triangle: .lowerC(offset: 0)))
        cases.append(GEMMCase(m: 130, n: 133, k: 16, transposeB: true, triangle: .lowerC(offset: 3)))
        cases.append(GEMMCase(m: 37, n: 21, k: 37, batch: 2, beta: -1, pad: 1, triangle: .lowerA(offset: 0)))
        cases.append(GEMMCase(m: 130, n: 33, k: 133, triangle: .lowerA(offset: 3)))
        cases.append(GEMMCase(m: 37, n: 21, k: 37, batch: 2, transposeA: true, pad: 1, triangle: .upperA(offset: 0)))
        cases.append(GEMMCase(m: 130, n: 40, k: 130, transposeA: true, alpha: 2, triangle: .upperA(offset: 2)))
        cases.append(GEMMCase(m: 600, n: 20, k: 600, beta: 1, triangle: .lowerA(offset: 0)))
        cases.append(GEMMCase(m: 600, n: 20, k: 600, transposeA: true, triangle: .upperA(offset: 0)))
        // A linear layer's bias, added as C is stored: whole and ragged tiles, beta, batches, several blocks of k.
        cases.append(GEMMCase(m: 37, n: 45, k: 19, batch: 2, beta: 0.5, pad: 2, offset: 1, bias: true))
        cases.append(GEMMCase(m: 130, n: 64, k: 700, transposeB: true, alpha: 0.5, bias: true))
        cases.append(GEMMCase(m: 5, n: 200, k: 33, transposeA: true, bias: true))
        return cases
    }()
}
