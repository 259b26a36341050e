// CPU LoRA low-rank path: u = x·Aᵀ [N, r], then y += s·u·Bᵀ [N, out], one row of x at a time
// so u never needs more than r floats of scratch when the caller does not keep it.

extension CPUBackend {
    public func loraProject(_ op: LoRAProjection) throws {
        try requireOwned(op)
        let (x, a, b, y) = (elements(op.x), elements(op.a), elements(op.b), elements(op.y))
        let (inF, outF, r) = (op.inFeatures, op.outFeatures, op.rank)
        var scratch = [Float](repeating: 0, count: r)
        scratch.withUnsafeMutableBufferPointer { scratch in
            for row in 0..<op.rows {
                let xr = x + row * inF
                let u = op.u.map { elements($0) + row * r } ?? scratch.baseAddress!
                for q in 0..<r {
                    let aq = a + q * inF
                    var dot: Float = 0
                    for i in 0..<inF { dot += xr[i] * aq[i] }
                    u[q] = dot
                }
                let yr = y + row * outF
                for o in 0..<outF {
                    let bo = b + o * r
                    var dot: Float = 0
                    for q in 0..<r { dot += u[q] * bo[q] }
                    yr[o] += op.scale * dot
                }
            }
        }
    }
}
