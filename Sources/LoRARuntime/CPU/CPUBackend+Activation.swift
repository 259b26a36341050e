// CPU gelu_new and SwiGLU and their gradients, 16 lanes at a time over fixed chunks split across the pool.
// gelu(x) = x·σ(2u), u = √(2/π)·(x + 0.044715·x³); swiglu(g, u) = g·σ(g)·u; one vector exp per 16 elements.

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

// MARK: - SwiGLU

extension CPUBackend {
    public func swiglu(_ op: SwiGLU) throws {
        try requireOwned(op)
        let (gate, up, y) = (elements(op.gate), elements(op.up), elements(op.y))
        forEachChunk(count: op.gate.count) { range in
            let i = range.lowerBound
            Self.swigluForward(gate + i, up + i, y + i, count: range.count)
        }
    }

    public func swigluBackward(_ op: SwiGLUBackward) throws {
        try requireOwned(op)
        let (gate, up, dy) = (elements(op.gate), elements(op.up), elements(op.dy))
        let (dGate, dUp) = (elements(op.dGate), elements(op.dUp))
        forEachChunk(count: op.gate.count) { range in
            let i = range.lowerBound
            Self.swigluBackward(gate + i, up + i, dy + i, dGate + i, dUp + i, count: range.count)
        }
    }

    /// y = (g·σ(g))·u. The ragged end goes through one zero-padded vector.
    static func swigluForward(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafeMutablePointer<Float>,
                              _ y: UnsafeMutablePointer<Float>, count: Int) {
        let full = count & ~15
        for j in stride(from: 0, to: full, by: 16) {
            let g = loadVector(gate + j)
            storeVector(g * sigmoid(g) * loadVector(up + j), y + j)
        }
        guard full < count else { return }
        var (g, u) = (Vector(), Vector())
        for j in full..<count { (g[j - full], u[j - full]) = (gate[j], up[j]) }
        let out = g * sigmoid(g) * u
        for j in full..<count { y[j] = out[j - full] }
    }

    /// dUp = dy·g·σ(g), dGate = dy·u·σ(g)·(1 + g·(1 − σ(g))). All of a vector's inputs are loaded before either
    /// output is stored: outputs may be inputs.
    static func swigluBackward(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafeMutablePointer<Float>,
                               _ dy: UnsafeMutablePointer<Float>, _ dGate: UnsafeMutablePointer<Float>,
                               _ dUp: UnsafeMutablePointer<Float>, count: Int) {
        @inline(__always) func gradients(_ g: Vector, _ u: Vector, _ d: Vector) -> (Vector, Vector) {
            let s = sigmoid(g)
            return (d * u * s * multiplyAdd(Vector(repeating: 1), g, 1 - s), d * (g * s))
        }
        let full = count & ~15
        for j in stride(from: 0, to: full, by: 16) {
            let (dg, du) = gradients(loadVector(gate + j), loadVector(up + j), loadVector(dy + j))
            storeVector(dg, dGate + j)
            storeVector(du, dUp + j)
        }
        guard full < count else { return }
        var (g, u, d) = (Vector(), Vector(), Vector())
        for j in full..<count { (g[j - full], u[j - full], d[j - full]) = (gate[j], up[j], dy[j]) }
        let (dg, du) = gradients(g, u, d)
        for j in full..<count { (dGate[j], dUp[j]) = (dg[j - full], du[j - full]) }
    }
}

/// σ(x) = 1/(1 + e^(−x)). Large |x| saturate to exactly 0 or 1 (e^(−x) is inf or 0).
@inline(__always) func sigmoid(_ x: Vector) -> Vector { 1 / (1 + exponential(-x)) }
