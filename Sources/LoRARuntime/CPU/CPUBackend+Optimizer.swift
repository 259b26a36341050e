// CPU AdamW: one pass over p, g, m, v, 16 lanes at a time, fixed chunks across the pool. The order of
// operations is torch.optim.AdamW's (single-tensor form), so results follow PyTorch to float rounding.

extension CPUBackend {
    public func adamW(_ op: AdamW) throws {
        try requireOwned(op)
        let pointers = (elements(op.parameters), elements(op.gradients), elements(op.firstMoment), elements(op.secondMoment))
        let constants = AdamWConstants(op)
        forEachChunk(count: op.parameters.count) { range in
            Self.adamWUpdate(pointers, range: range, constants)
        }
    }

    /// The update over `range`. Out of line so the loop compiles as vector code.
    static func adamWUpdate(_ p: (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>,
                                  UnsafeMutablePointer<Float>), range: Range<Int>, _ c: AdamWConstants) {
        let (param, grad, m, v) = p
        var i = range.lowerBound
        while i + 16 <= range.upperBound {
            let (newP, newM, newV) = c.update(p: loadVector(param + i), g: loadVector(grad + i), m: loadVector(m + i), v: loadVector(v + i))
            storeVector(newP, param + i)
            storeVector(newM, m + i)
            storeVector(newV, v + i)
            i += 16
        }
        while i < range.upperBound {
            // The scalar end through lane 0 of the same vector code, so it rounds identically.
            let (newP, newM, newV) = c.update(p: Vector(repeating: param[i]), g: Vector(repeating: grad[i]),
                                              m: Vector(repeating: m[i]), v: Vector(repeating: v[i]))
            (param[i], m[i], v[i]) = (newP[0], newM[0], newV[0])
            i += 1
        }
    }
}

/// The scalars of one AdamW step, as vectors.
struct AdamWConstants {
    let gradientScale, decay, weight, beta2, secondWeight, correction, epsilon, stepSize: Vector
    /// torch's lerp uses a different but equal form when the weight is ≥ 0.5; follow it.
    let largeWeight: Bool

    init(_ op: AdamW) {
        gradientScale = Vector(repeating: op.gradientScale)
        decay = Vector(repeating: op.decay)
        weight = Vector(repeating: op.firstWeight)
        beta2 = Vector(repeating: op.beta2)
        secondWeight = Vector(repeating: op.secondWeight)
        correction = Vector(repeating: op.secondCorrectionRoot)
        epsilon = Vector(repeating: op.epsilon)
        stepSize = Vector(repeating: op.stepSize)
        largeWeight = op.firstWeight >= 0.5
    }

    @inline(__always) func update(p: Vector, g rawG: Vector, m: Vector, v: Vector) -> (Vector, Vector, Vector) {
        let g = rawG * gradientScale
        let decayed = p * decay
        let newM = largeWeight ? g - (g - m) * (1 - weight) : m + weight * (g - m)
        let newV = v * beta2 + secondWeight * g * g
        let denominator = newV.squareRoot() / correction + epsilon
        return (decayed - stepSize * (newM / denominator), newM, newV)
    }
}
