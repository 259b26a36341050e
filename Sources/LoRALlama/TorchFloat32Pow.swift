// `base ** exponents` in float32, rounded exactly as PyTorch's CPU kernel rounds it, so RoPE inverse frequencies
// match transformers bit for bit. PyTorch's float32 `pow` is not correctly rounded: on an x86 CPU with AVX-512 it
// runs SLEEF's `Sleef_powf16_u10` (≤ 1 ulp) on whole chunks of 2 × 16 elements and the C library's `powf` on the
// remaining tail (aten/src/ATen/native/cpu/Loops.h `vectorized_loop`). Measured on transformers' own inv_freq
// (rope_theta 1e6, head_dim 128 and others), about one element in 120 differs by 1 ulp from a correctly rounded pow.
// This file reproduces SLEEF's algorithm (xpowf = expkf(logkf(|x|) · y), float-float arithmetic with FMA; SLEEF
// 3.6–3.9 src/libm/sleefsimdsp.c, the AVX-512 variant; Boost Software License) for positive finite bases.
import Foundation

/// Elements PyTorch's AVX-512 CPU kernels process per vectorized step (2 × 16 floats); a tail shorter than this
/// goes through the scalar C library function instead.
let torchVectorStep = 32

/// `base ** exponents` as `torch.pow(python_float, float32_tensor)` computes it on an AVX-512 CPU.
/// - base: positive and finite (cast to float32 first, as torch casts the scalar); exponents: finite.
func torchPow(base: Double, exponents: [Float]) -> [Float] {
    let x = Float(base)
    precondition(x > 0 && x.isFinite, "torchPow: base \(base) must be positive and finite")
    let vectorized = exponents.count / torchVectorStep * torchVectorStep
    return exponents.indices.map { i in
        i < vectorized ? SleefFloat.pow(x, exponents[i]) : Foundation.powf(x, exponents[i])
    }
}

/// SLEEF's single-precision `pow` with 1-ulp accuracy, for x > 0. Each helper keeps SLEEF's operation order:
/// a float-float value is (hi, lo); `fma(a, b, c)` is one fused multiply-add (SLEEF builds it with FMA on AVX2
/// and AVX-512); every other `+ - * /` rounds once. Swift never contracts `a * b + c` into an FMA on its own.
enum SleefFloat {
    struct F2 { var x: Float; var y: Float }

    @inline(__always) static func fma(_ a: Float, _ b: Float, _ c: Float) -> Float { c.addingProduct(a, b) }
    /// a·b − c, fused.
    @inline(__always) static func fmapn(_ a: Float, _ b: Float, _ c: Float) -> Float { (-c).addingProduct(a, b) }
    /// −a·b + c, fused.
    @inline(__always) static func fmanp(_ a: Float, _ b: Float, _ c: Float) -> Float { c.addingProduct(-a, b) }

    static func add2(_ x: Float, _ y: Float) -> F2 {
        let s = x + y, v = s - x
        return F2(x: s, y: (x - (s - v)) + (y - v))
    }
    static func add2(_ x: F2, _ y: Float) -> F2 {
        let s = x.x + y, v = s - x.x
        let t = (x.x - (s - v)) + (y - v)
        return F2(x: s, y: t + x.y)
    }
    static func add2(_ x: F2, _ y: F2) -> F2 {
        let s = x.x + y.x, v = s - x.x
        let t = (x.x - (s - v)) + (y.x - v)
        return F2(x: s, y: t + (x.y + y.y))
    }
    /// Requires |x| ≥ |y|.
    static func add(_ x: F2, _ y: F2) -> F2 {
        let s = x.x + y.x
        return F2(x: s, y: (((x.x - s) + y.x) + x.y) + y.y)
    }
    static func add(_ x: Float, _ y: F2) -> F2 {
        let s = x + y.x
        return F2(x: s, y: ((x - s) + y.x) + y.y)
    }
    static func mul(_ x: F2, _ y: Float) -> F2 {
        let s = x.x * y
        return F2(x: s, y: fma(x.y, y, fmapn(x.x, y, s)))
    }
    static func mul(_ x: F2, _ y: F2) -> F2 {
        let s = x.x * y.x
        return F2(x: s, y: fma(x.x, y.y, fma(x.y, y.x, fmapn(x.x, y.x, s))))
    }
    static func square(_ x: F2) -> F2 {
        let s = x.x * x.x
        return F2(x: s, y: fma(x.x + x.x, x.y, fmapn(x.x, x.x, s)))
    }
    static func div(_ n: F2, _ d: F2) -> F2 {
        let t = 1 / d.x
        let s = n.x * t
        let u = fmapn(t, n.x, s)
        let v = fmanp(d.y, t, fmanp(d.x, t, 1))
        return F2(x: s, y: fma(s, v, fma(n.y, t, u)))
    }
    static func scale(_ d: F2, _ s: Float) -> F2 { F2(x: d.x * s, y: d.y * s) }
    static func normalize(_ t: F2) -> F2 {
        let s = t.x + t.y
        return F2(x: s, y: (t.x - s) + t.y)
    }

    /// log(d) as a float-float, for positive normal d (SLEEF `logkf`, AVX-512 form: the exponent comes from
    /// `getexp(d · (1/0.75))` and the mantissa from `getmant(d)` normalized to [0.75, 1.5)).
    static func logk(_ d: Float) -> F2 {
        let e = Float((d * (0x1.555556p+0 as Float)).exponent)
        let significand = d.significand
        let m = significand >= 1.5 ? significand / 2 : significand
        let x = div(add2(-1, m), add2(1, m))
        let x2 = square(x)
        var t: Float = 0x1.ec2d14p-3
        t = fma(t, x2.x, 0x1.23f494p-2)
        t = fma(t, x2.x, 0x1.999bb2p-2)
        let c = F2(x: 0x1.555554p-1, y: 0x1.fb6706p-29)
        var s = mul(F2(x: 0x1.62e430p-1, y: -0x1.05c610p-29), e)
        s = add(s, scale(x, 2))
        s = add(s, mul(mul(x2, x), add2(mul(x2, t), c)))
        return s
    }

    /// exp(d) for a float-float d (SLEEF `expkf`).
    static func expk(_ d: F2) -> Float {
        let u0 = (d.x + d.y) * (0x1.715476p+0 as Float)
        let q = Int32(u0.rounded(.toNearestOrEven))  // cvtps2dq under the default rounding mode
        var s = add2(d, Float(q) * -(0x1.62e400p-1 as Float))
        s = add2(s, Float(q) * -(0x1.7f7d1cp-20 as Float))
        s = normalize(s)
        var u: Float = 0x1.655decp-10
        u = fma(u, s.x, 0x1.1222d6p-7)
        u = fma(u, s.x, 0x1.555e98p-5)
        u = fma(u, s.x, 0x1.5554bcp-3)
        u = fma(u, s.x, 0x1.fffff6p-2)
        var t = add(s, mul(square(s), u))
        t = add(1, t)
        let r = ldexp(t.x + t.y, q)
        return d.x < -104 ? 0 : r
    }

    /// SLEEF `vldexp_vf_vf_vi2`: x · 2^q, scaling in up to five steps so no intermediate overflows.
    static func ldexp(_ x: Float, _ q: Int32) -> Float {
        var m = q >> 31
        m = (((m &+ q) >> 6) &- m) << 4
        let q = q &- (m << 2)
        m = m &+ 0x7f
        m = m > 0 ? m : 0
        m = m > 0xff ? 0xff : m
        var u = Float(bitPattern: UInt32(bitPattern: m << 23))
        let y = x * u * u * u * u
        u = Float(bitPattern: UInt32(bitPattern: (q &+ 0x7f) << 23))
        return y * u
    }

    /// x^y for positive finite x and finite y (SLEEF `xpowf`, whose remaining special cases cover x ≤ 0, ±∞ and NaN).
    static func pow(_ x: Float, _ y: Float) -> Float {
        precondition(x > 0 && x.isFinite && y.isFinite, "SleefFloat.pow handles positive finite x and finite y")
        if y == 0 || x == 1 { return 1 }
        let r = expk(mul(logk(x), y))
        return r.isNaN ? .infinity : r
    }
}
