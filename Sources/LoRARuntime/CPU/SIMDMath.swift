// Vector helpers shared by the CPU ops: fused multiply-add that never becomes a libm call, a vectorized exp,
// and loads/stores through raw pointers (Array subscripts in inner loops cost ~30×).
import Foundation

/// The CPU backend's vector: 16 floats, one AVX-512 register (two AVX or four SSE registers elsewhere).
typealias Vector = SIMD16<Float>

extension CPUBackend {
    /// True when this module was built for a CPU with fused multiply-add (`-target-cpu native` sets
    /// `LORA_FMA`; see Package.swift). Without it, `addingProduct` compiles to a call to libm `fmaf` per lane.
    public static var fusedMultiplyAdd: Bool {
        #if LORA_FMA || arch(arm64)
        return true
        #else
        return false
        #endif
    }
}

/// `acc + a·b`: one FMA instruction where the build has them, else a multiply and an add (never `fmaf`).
@inline(__always) func multiplyAdd(_ acc: Vector, _ a: Vector, _ b: Vector) -> Vector {
    #if LORA_FMA || arch(arm64)
    return acc.addingProduct(a, b)
    #else
    return acc + a * b
    #endif
}

@inline(__always) func multiplyAdd(_ acc: Float, _ a: Float, _ b: Float) -> Float {
    #if LORA_FMA || arch(arm64)
    return acc.addingProduct(a, b)
    #else
    return acc + a * b
    #endif
}

@inline(__always) func loadVector(_ p: UnsafePointer<Float>) -> Vector {
    UnsafeRawPointer(p).loadUnaligned(as: Vector.self)
}

@inline(__always) func storeVector(_ v: Vector, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: Vector.self)
}

/// eˣ for 16 lanes: x = n·ln2 + r with |r| ≤ ln2/2, a degree-6 polynomial for eʳ (rel. error ~2e-7), and 2ⁿ
/// built in the exponent bits. Inputs below −87.3 give 0 (softmax's masked and far-below-max entries), above
/// 88.7 give +inf; NaN stays NaN.
@inline(__always) func exponential(_ x: Vector) -> Vector {
    var result = exponentialCore(minimum(maximum(x, Vector(repeating: -87.33654)), Vector(repeating: 88.72283)))
    result.replace(with: 0, where: x .< -87.33654)
    result.replace(with: .infinity, where: x .> 88.72283)
    result.replace(with: x, where: x .!= x)
    return result
}

/// eˣ for x ≤ 0 (a softmax's inputs after subtracting the row maximum), without `exponential`'s overflow and
/// NaN blends: NaN passes through the arithmetic, and inputs below −87.3 give the smallest normal float
/// (~1.2e-38) instead of 0, which no sum or probability can tell apart. A quarter fewer instructions.
@inline(__always) func exponentialOfNonPositive(_ x: Vector) -> Vector {
    exponentialCore(maximum(x, Vector(repeating: -87.33654)))
}

/// eˣ for x in [−87.3, 88.7].
@inline(__always) func exponentialCore(_ clamped: Vector) -> Vector {
    // Adding 1.5·2²³ rounds to an integer in the low mantissa bits (and 127 biases it as an exponent).
    let shifter = Vector(repeating: 12_582_912 + 127)
    let t = multiplyAdd(shifter, clamped, Vector(repeating: 1.442695041))
    let n = t - shifter
    // Two-step ln2 (Cody-Waite) so r keeps its precision.
    var r = multiplyAdd(clamped, n, Vector(repeating: -0.693145751953125))
    r = multiplyAdd(r, n, Vector(repeating: -1.428606765330187e-06))
    var p = Vector(repeating: 1.0 / 720)
    p = multiplyAdd(Vector(repeating: 1.0 / 120), p, r)
    p = multiplyAdd(Vector(repeating: 1.0 / 24), p, r)
    p = multiplyAdd(Vector(repeating: 1.0 / 6), p, r)
    p = multiplyAdd(Vector(repeating: 0.5), p, r)
    p = multiplyAdd(Vector(repeating: 1), p, r)
    p = multiplyAdd(Vector(repeating: 1), p, r)
    let twoToN = unsafeBitCast(unsafeBitCast(t, to: SIMD16<UInt32>.self) &<< 23, to: Vector.self)
    return p * twoToN
}

/// The lanes at and past `count`: the part of a vector that runs past the end of the data, to be masked.
@inline(__always) func lanes(from count: Int) -> SIMDMask<SIMD16<Int32>> {
    SIMD16<Int32>(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15) .>= SIMD16<Int32>(repeating: Int32(clamping: count))
}

/// y[j] = exp(scale·x[j] − shift) for j in 0..<count; returns Σ y. `shift` is the largest scale·x[j], so every
/// exponent is ≤ 0. With `readable` entries of x and y available, the ragged end is one whole vector whose lanes
/// past `count` (whatever x holds there) become 0 in y. The loop lives here, next to the exponential, so the
/// compiler inlines it (called from inside the ops' closures it would not).
func exponentiate(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int,
                  scale: Float, shift: Float, readable: Int = 0) -> Float {
    let (vs, vm) = (Vector(repeating: scale), Vector(repeating: -shift))
    let full = count & ~15
    var vsum = Vector()
    for j in stride(from: 0, to: full, by: 16) {
        let e = exponentialOfNonPositive(multiplyAdd(vm, loadVector(x + j), vs))
        storeVector(e, y + j)
        vsum += e
    }
    if full < count && full + 16 <= readable {
        let e = exponentialOfNonPositive(multiplyAdd(vm, loadVector(x + full), vs))
            .replacing(with: 0, where: lanes(from: count - full))
        storeVector(e, y + full)
        vsum += e
    } else if full < count {
        // The ragged end through one padded vector: padding lanes are −inf, so exp gives 0.
        var tail = Vector(repeating: -.infinity)
        for j in full..<count { tail[j - full] = multiplyAdd(-shift, x[j], scale) }
        let e = exponential(tail)  // the full form: padding must add exactly 0
        for j in full..<count { y[j] = e[j - full] }
        vsum += e
    }
    return horizontalSum(vsum)
}

/// The sum of a vector's lanes, in a fixed order.
@inline(__always) func horizontalSum(_ v: Vector) -> Float {
    let a = v.lowHalf + v.highHalf
    let b = a.lowHalf + a.highHalf
    let c = b.lowHalf + b.highHalf
    return c[0] + c[1]
}

/// The largest lane. (The standard library's `max()` and `pointwiseMax` compile to scalar loops here; masked
/// blends compile to vector instructions.)
@inline(__always) func horizontalMax(_ v: Vector) -> Float {
    let a = v.lowHalf.replacing(with: v.highHalf, where: v.lowHalf .< v.highHalf)
    let b = a.lowHalf.replacing(with: a.highHalf, where: a.lowHalf .< a.highHalf)
    let c = b.lowHalf.replacing(with: b.highHalf, where: b.lowHalf .< b.highHalf)
    return Swift.max(c[0], c[1])
}

/// Lane-wise maximum; a NaN in `a` stays.
@inline(__always) func maximum(_ a: Vector, _ b: Vector) -> Vector { a.replacing(with: b, where: a .< b) }

/// Lane-wise minimum; a NaN in `a` stays.
@inline(__always) func minimum(_ a: Vector, _ b: Vector) -> Vector { a.replacing(with: b, where: a .> b) }
