// CPU gelu_new and its gradient, 16 lanes at a time over fixed chunks split across the pool.
// gelu(x) = x·σ(2u), u = √(2/π)·(x + 0.044715·x³); one vector exp per 16 elements.

extension CPUBackend {
    public func gelu(_ op: GELU) throws {
        try requireOwned(op)
        let (x, y) = (elements(op.x), elements(op.y))
        forEachChunk(count: op.x.count) { range in
            Self.geluForward(x + range.lowerBound, y + range.lowerBound, count: range.count)
        }
    }

    public func geluBackward(_ op: GELUBackward) throws {
        try requireOwned(op)
        let (x, dy, dx) = (elements(op.x), elements(op.dy), elements(op.dx))
        forEachChunk(count: op.x.count) { range in
            let i = range.lowerBound
            Self.geluBackward(x + i, dy + i, dx + i, count: range.count)
        }
    }

    /// y = x·σ(2u). The ragged end goes through one zero-padded vector.
    static func geluForward(_ x: UnsafeMutablePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int) {
        let full = count & ~15
        for j in stride(from: 0, to: full, by: 16) {
            let v = loadVector(x + j)
            storeVector(v * geluGate(v), y + j)
        }
        guard full < count else { return }
        var v = Vector()
        for j in full..<count { v[j - full] = x[j] }
        let out = v * geluGate(v)
        for j in full..<count { y[j] = out[j - full] }
    }

    /// dx = dy·(s + 2·x·s·(1 − s)·u′), s = σ(2u), u′ = √(2/π)·(1 + 3·0.044715·x²).
    static func geluBackward(_ x: UnsafeMutablePointer<Float>, _ dy: UnsafeMutablePointer<Float>,
                             _ dx: UnsafeMutablePointer<Float>, count: Int) {
        let full = count & ~15
        for j in stride(from: 0, to: full, by: 16) {
            storeVector(loadVector(dy + j) * geluSlope(loadVector(x + j)), dx + j)
        }
        guard full < count else { return }
        var v = Vector()
        for j in full..<count { v[j - full] = x[j] }
        let slope = geluSlope(v)
        for j in full..<count { dx[j] = dy[j] * slope[j - full] }
    }
}

/// σ(2u) for gelu_new: 1/(1 + e^(−2u)). Large |x| saturate to exactly 0 or 1 (e^(−2u) is inf or 0).
@inline(__always) func geluGate(_ x: Vector) -> Vector {
    let u = Vector(repeating: GELUConstants.sqrtTwoOverPi) * multiplyAdd(x, Vector(repeating: GELUConstants.cubic) * x * x, x)
    return 1 / (1 + exponential(-2 * u))
}

/// gelu′(x). The second term uses x clamped to ±20: beyond ±6 its s·(1 − s) is already exactly 0 in float, and
/// the clamp keeps u′ finite (0·inf would be NaN for |x| > 1e19).
@inline(__always) func geluSlope(_ x: Vector) -> Vector {
    let s = geluGate(x)
    let xc = minimum(maximum(x, Vector(repeating: -20)), Vector(repeating: 20))
    let du = Vector(repeating: GELUConstants.sqrtTwoOverPi)
        * multiplyAdd(Vector(repeating: 1), Vector(repeating: 3 * GELUConstants.cubic) * xc, xc)
    return multiplyAdd(s, 2 * xc * s * (1 - s), du)
}
