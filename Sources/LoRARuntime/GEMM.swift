// GEMM: C = alpha·op(A)·op(B) + beta·C (+ bias), row-major, batched with strides, in the BLAS sense:
// element (i, j) of batch b of an operand lives at `offset + b·batchStride + i·ld + j`,
// op(X) = Xᵀ when the transpose flag is set. beta = 0 overwrites C (NaNs in C do not survive).
// The optional bias is a linear layer's: added to every row of C as the tile is stored, which saves the separate
// pass over C a bias add would be (cuBLASLt calls this an epilogue).
// Dtypes: A and B may each be float32, bfloat16 or float16 (a weight kept in its file's dtype); the math is float32
// (16-bit operands are widened exactly as they are loaded), and C and the bias are float32.

/// Where one GEMM operand lives inside its tensor. Offsets, strides and `ld` count elements.
public struct GEMMOperand: Sendable {
    public var tensor: Tensor
    public var offset: Int
    /// Leading dimension: elements between the starts of consecutive stored rows.
    public var ld: Int
    /// Elements between consecutive matrices of a batch; 0 reuses one matrix for every batch entry.
    public var batchStride: Int

    public init(_ tensor: Tensor, offset: Int = 0, ld: Int, batchStride: Int = 0) {
        self.tensor = tensor
        self.offset = offset
        self.ld = ld
        self.batchStride = batchStride
    }
}

/// A validated GEMM problem: `C[b] = alpha·op(A[b])·op(B[b]) + beta·C[b]` for `b` in `0..<batch`,
/// where op(A) is `[m, k]`, op(B) is `[k, n]` and C is `[m, n]`.
public struct GEMM: BackendOp {
    public var owner: any Backend { c.tensor.backend }
    public let m: Int, n: Int, k: Int, batch: Int
    public let alpha: Float, beta: Float
    public let a: GEMMOperand, b: GEMMOperand, c: GEMMOperand
    public let transposeA: Bool, transposeB: Bool
    /// Causal structure that lets a backend skip work (nil: none).
    public let triangle: Triangle?
    /// `[n]`, added to every row of every C: `C = alpha·op(A)·op(B) + beta·C + bias`.
    public let bias: Tensor?

    /// The triangles of causal attention, where query i sees keys j ≤ i + offset (offset: keys cached before the
    /// queries). Work outside them can be skipped, which saves ~45% of attention's multiply-adds; a backend may
    /// also ignore the hint, because the result that matters is the same either way.
    public enum Triangle: Sendable, Equatable {
        /// Only C's entries on or below the diagonal (j ≤ i + offset) are wanted; those above are left unspecified
        /// (scores, whose masked entries softmax never reads).
        case lowerC(offset: Int)
        /// op(A) is zero above the diagonal (op(A)[i, p] = 0 for p > i + offset), as attention probabilities are:
        /// those terms are skipped.
        case lowerA(offset: Int)
        /// op(A) is zero below the diagonal (op(A)[i, p] = 0 for p < i − offset), as transposed probabilities are.
        case upperA(offset: Int)

        /// The terms `p` that rows `rows` need (lowerA, upperA), or `0..<k` (lowerC); empty when none.
        public func terms(rows: Range<Int>, k: Int) -> Range<Int> {
            switch self {
            case .lowerC: 0..<k
            case .lowerA(let offset): 0..<max(0, min(k, rows.upperBound + offset))
            case .upperA(let offset): min(k, max(0, rows.lowerBound - offset))..<k
            }
        }

        /// Whether the block `rows` × `columns` of C lies wholly above the diagonal and is not wanted (lowerC).
        public func skips(rows: Range<Int>, columns: Range<Int>) -> Bool {
            guard case .lowerC(let offset) = self else { return false }
            return columns.lowerBound > rows.upperBound - 1 + offset
        }
    }

    /// The general form. Throws if any element an operand would touch lies outside its tensor.
    public init(m: Int, n: Int, k: Int, batch: Int = 1, alpha: Float = 1,
                a: GEMMOperand, transposeA: Bool = false,
                b: GEMMOperand, transposeB: Bool = false,
                beta: Float = 0, c: GEMMOperand, bias: Tensor? = nil, triangle: Triangle? = nil) throws {
        guard m >= 1, n >= 1, k >= 1, batch >= 1 else {
            throw LoRAError.invalidArgument("gemm: m=\(m) n=\(n) k=\(k) batch=\(batch) must all be ≥ 1")
        }
        guard alpha.isFinite, beta.isFinite else {
            throw LoRAError.invalidArgument("gemm: alpha=\(alpha) beta=\(beta) must be finite")
        }
        try GEMM.check("A", a, rows: transposeA ? k : m, cols: transposeA ? m : k, batch: batch)
        try GEMM.check("B", b, rows: transposeB ? n : k, cols: transposeB ? k : n, batch: batch)
        try GEMM.check("C", c, rows: m, cols: n, batch: batch)
        // Batches of C must not overlap: either one after another, or side by side within each row (attention
        // heads writing their columns of a [tokens, heads·dim] output).
        let stacked = c.batchStride >= (m - 1) * c.ld + n
        let sideBySide = c.batchStride >= n && (batch - 1) * c.batchStride + n <= c.ld
        if batch > 1 && !stacked && !sideBySide {
            throw LoRAError.invalidArgument("gemm: C's batch stride \(c.batchStride) makes batches overlap")
        }
        if let bias, bias.count != n {
            throw LoRAError.shapeMismatch("gemm: bias is \(describe(bias.shape)) but C has \(n) columns")
        }
        try c.tensor.backend.requireOwned("gemm", a.tensor, b.tensor, bias)
        try a.tensor.requireDType(DType.floatingPoint, op: "gemm", operand: "A")
        try b.tensor.requireDType(DType.floatingPoint, op: "gemm", operand: "B")
        try requireFloat32("gemm", ("C", c.tensor), ("bias", bias))
        (self.m, self.n, self.k, self.batch, self.alpha, self.beta) = (m, n, k, batch, alpha, beta)
        (self.a, self.b, self.c, self.transposeA, self.transposeB) = (a, b, c, transposeA, transposeB)
        (self.triangle, self.bias) = (triangle, bias)
    }

    /// The shape-driven form for whole tensors: A is `[..., rows, cols]` with op(A) `[m, k]`,
    /// B is `[..., rows, cols]` with op(B) `[k, n]`, C is `[..., m, n]`. Leading axes are the batch;
    /// A or B may have none (or a batch of 1) and is then shared by every batch entry.
    public init(a: Tensor, b: Tensor, c: Tensor, transposeA: Bool = false, transposeB: Bool = false,
                alpha: Float = 1, beta: Float = 0, bias: Tensor? = nil) throws {
        let expected = try GEMM.resultShape(a: a.shape, b: b.shape, transposeA: transposeA, transposeB: transposeB)
        guard c.rank >= 2, Array(c.shape.suffix(2)) == Array(expected.suffix(2)),
              GEMM.batchCount(c.shape) == GEMM.batchCount(expected) else {
            throw LoRAError.shapeMismatch("gemm: C is \(describe(c.shape)) but op(A)·op(B) is \(describe(expected))")
        }
        let batch = GEMM.batchCount(c.shape)
        func operand(_ t: Tensor) -> GEMMOperand {
            let (r, cl) = (t.shape[t.rank - 2], t.shape[t.rank - 1])
            return GEMMOperand(t, ld: cl, batchStride: GEMM.batchCount(t.shape) == 1 ? 0 : r * cl)
        }
        let m = expected[expected.count - 2], n = expected[expected.count - 1]
        let k = transposeA ? a.shape[a.rank - 2] : a.shape[a.rank - 1]
        try self.init(m: m, n: n, k: k, batch: batch, alpha: alpha,
                      a: operand(a), transposeA: transposeA, b: operand(b), transposeB: transposeB,
                      beta: beta, c: operand(c), bias: bias)
    }

    /// The shape of op(A)·op(B) with batch axes broadcast where one side has none.
    public static func resultShape(a: [Int], b: [Int], transposeA: Bool, transposeB: Bool) throws -> [Int] {
        guard a.count >= 2, b.count >= 2 else {
            throw LoRAError.shapeMismatch("gemm: operands need at least 2 axes, got A \(describe(a)) and B \(describe(b))")
        }
        let (am, ak) = transposeA ? (a[a.count - 1], a[a.count - 2]) : (a[a.count - 2], a[a.count - 1])
        let (bk, bn) = transposeB ? (b[b.count - 1], b[b.count - 2]) : (b[b.count - 2], b[b.count - 1])
        guard ak == bk else {
            throw LoRAError.shapeMismatch(
                "gemm: op(A) is [\(am), \(ak)] but op(B) is [\(bk), \(bn)] (A \(describe(a)), B \(describe(b)))")
        }
        let (leadA, leadB) = (Array(a.dropLast(2)), Array(b.dropLast(2)))
        let lead: [Int]
        switch (batchCount(a), batchCount(b)) {
        case (1, _): lead = leadB
        case (_, 1): lead = leadA
        default:
            guard leadA == leadB else {
                throw LoRAError.shapeMismatch("gemm: batch axes differ: A \(describe(a)), B \(describe(b))")
            }
            lead = leadA
        }
        return lead + [am, bn]
    }

    static func batchCount(_ shape: [Int]) -> Int { shape.dropLast(2).reduce(1, *) }

    private static func check(_ name: String, _ x: GEMMOperand, rows: Int, cols: Int, batch: Int) throws {
        guard x.offset >= 0, x.batchStride >= 0, x.ld >= cols else {
            throw LoRAError.invalidArgument(
                "gemm: \(name) has offset \(x.offset), ld \(x.ld), batch stride \(x.batchStride) for \(rows)×\(cols) matrices")
        }
        let last = x.offset + (batch - 1) * x.batchStride + (rows - 1) * x.ld + cols
        guard last <= x.tensor.count else {
            throw LoRAError.shapeMismatch(
                "gemm: \(name) reaches element \(last) but its tensor \(describe(x.tensor.shape)) has \(x.tensor.count)")
        }
    }
}
