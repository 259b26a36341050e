// CPU rotary position embedding (positions from start and T, or per row): rows split over the pool, each head's two halves 16 pairs at a time.
// Each pair is read before it is written, so the op runs in place.

extension CPUBackend {
    public func rope(_ op: RoPE) throws {
        try requireOwned(op)
        let (x, y, cos, sin) = (elements(op.input), elements(op.output), elements(op.cos), elements(op.sin))
        let (heads, d, half) = (op.heads, op.headDim, op.headDim / 2)
        let sign: Float = op.inverse ? -1 : 1
        let positions = op.positions.map { int32s($0) }
        forEachRowRange(rows: op.rows, cols: heads * d) { rows in
            for r in rows {
                let p = positions.map { Int($0[r]) } ?? op.position(row: r)
                guard (0..<op.tablePositions).contains(p) else {  // a bad position: NaN, as the OpenCL kernel writes
                    (y + r * heads * d).update(repeating: .nan, count: heads * d)
                    continue
                }
                for h in 0..<heads {
                    let offset = (r * heads + h) * d
                    Self.rotate(x + offset, y + offset, cos + p * half, sin + p * half, half: half, sign: sign)
                }
            }
        }
    }

    /// One head: (x₁, x₂) → (x₁·c − x₂·s, x₂·c + x₁·s) with s = sign·sin.
    static func rotate(_ x: UnsafeMutablePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ cos: UnsafeMutablePointer<Float>,
                       _ sin: UnsafeMutablePointer<Float>, half: Int, sign: Float) {
        let vsign = Vector(repeating: sign)
        let full = half & ~15
        for i in stride(from: 0, to: full, by: 16) {
            let (a, b) = (loadVector(x + i), loadVector(x + half + i))
            let (c, s) = (loadVector(cos + i), vsign * loadVector(sin + i))
            storeVector(multiplyAdd(a * c, -b, s), y + i)
            storeVector(multiplyAdd(b * c, a, s), y + half + i)
        }
        for i in full..<half {
            let (a, b, c, s) = (x[i], x[half + i], cos[i], sign * sin[i])
            (y[i], y[half + i]) = (multiplyAdd(a * c, -b, s), multiplyAdd(b * c, a, s))
        }
    }
}
