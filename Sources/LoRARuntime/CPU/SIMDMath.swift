// Vector helpers shared by the CPU ops: fused multiply-add that never becomes a libm call, a vectorized exp,
// and loads/stores through raw pointers (Array subscripts in inner loops cost ~30×).
import Foundation

/// The CPU backend's vector: 16 floats, one AVX-512 register (two AVX or four SSE registers elsewhere).
public typealias Vector = SIMD16<Float>

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
@inline(__always) func exp(_ x: Vector) -> Vector {
    let clamped = x.clamped(lowerBound: Vector(repeating: -87.33654), upperBound: Vector(repeating: 88.72283))
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
    var result = p * twoToN
    result.replace(with: 0, where: x .< -87.33654)
    result.replace(with: .infinity, where: x .> 88.72283)
    result.replace(with: x, where: x .!= x)
    return result
}

/// The sum of a vector's lanes, in a fixed order.
@inline(__always) func horizontalSum(_ v: Vector) -> Float {
    let a = v.lowHalf + v.highHalf
    let b = a.lowHalf + a.highHalf
    let c = b.lowHalf + b.highHalf
    return c[0] + c[1]
}

@inline(__always) func horizontalMax(_ v: Vector) -> Float { v.max() }
