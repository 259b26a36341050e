// The LoRA low-rank path of a layer y = x·W0ᵀ + b + s·(x·Aᵀ)·Bᵀ, in PEFT's layout:
// x [N, in] (leading axes flattened), A [r, in], B [out, r], y [N, out], u = x·Aᵀ [N, r].

/// `u = x·Aᵀ`, then `y += scale·u·Bᵀ`. `u` is written when given (backward needs it).
public struct LoRAProjection: BackendOp {
    public var owner: any Backend { x.backend }
    public let x: Tensor, a: Tensor, b: Tensor, y: Tensor
    public let u: Tensor?
    public let scale: Float
    /// N (rows of x), in, out, r.
    public let rows: Int, inFeatures: Int, outFeatures: Int, rank: Int

    public init(x: Tensor, a: Tensor, b: Tensor, scale: Float, y: Tensor, u: Tensor? = nil) throws {
        try x.backend.requireOwned("loraProject", x, a, b, y, u)
        try requireFloat32("loraProject", ("x", x), ("A", a), ("B", b), ("y", y), ("u", u))
        guard a.rank == 2, b.rank == 2 else {
            throw LoRAError.shapeMismatch("lora: A \(describe(a.shape)) and B \(describe(b.shape)) must be matrices")
        }
        let (r, inF, outF) = (a.shape[0], a.shape[1], b.shape[0])
        guard b.shape[1] == r else {
            throw LoRAError.shapeMismatch("lora: A is \(describe(a.shape)) ([r, in]) but B is \(describe(b.shape)) ([out, r])")
        }
        guard x.shape.last == inF else {
            throw LoRAError.shapeMismatch("lora: x is \(describe(x.shape)) but A expects \(inF) input features")
        }
        let n = x.count / inF
        guard y.shape.last == outF, y.count == n * outF else {
            throw LoRAError.shapeMismatch("lora: y is \(describe(y.shape)) but should hold \(n) rows of \(outF)")
        }
        if let u, u.count != n * r {
            throw LoRAError.shapeMismatch("lora: u is \(describe(u.shape)) but should hold \(n) rows of rank \(r)")
        }
        guard scale.isFinite else { throw LoRAError.invalidArgument("lora: scale \(scale) must be finite") }
        (self.x, self.a, self.b, self.y, self.u, self.scale) = (x, a, b, y, u, scale)
        (rows, inFeatures, outFeatures, rank) = (n, inF, outF, r)
    }
}
