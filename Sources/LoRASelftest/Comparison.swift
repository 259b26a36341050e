// How a device's result is held against the CPU backend's: an error per element measured against a magnitude, and a
// bound on it derived from how the op computes, not fitted to what a device happened to produce.
//
// float32 rounds each operation with relative error at most u = 2⁻²⁴. A sum of n products computed in any order
// is off by at most γₙ·Σ|terms| with γₙ = n·u/(1 − n·u) (Higham, Accuracy and Stability of Numerical Algorithms,
// §3.1), so the CPU and a device, each within that of the exact value, differ by at most 2γₙ·Σ|terms|. GEMMs (and
// the ops built from them: LoRA, NF4 GEMMs) are held to exactly that, element by element, with Σ|terms| computed by
// running the same op on the CPU over the inputs' absolute values. Row ops (softmax, norms, cross-entropy) sum over
// a row and call exp, log or sqrt, which OpenCL allows a few ulp (OpenCL C 1.2 §7.4: exp and log 3 ulp, sqrt 3 ulp,
// and the CPU is also off by up to 1 ulp): their bound is `c·(n + ulps)·u` relative to the largest magnitude in the
// output (normwise), with n the longest sum and c stated per op. Ops that move or convert values exactly
// (copies, embeddings, dropout masks, conversions, sums of numbers chosen so every partial sum is exact) must match
// bit for bit: bound 0.

/// float32's unit roundoff, 2⁻²⁴.
public let unitRoundoff = Double(Float.ulpOfOne) / 2

/// The largest error OpenCL C allows the exp, log, sqrt and division a kernel calls, in ulp (OpenCL C 1.2 §7.4,
/// full profile: exp, log and sqrt 3 ulp, division 2.5; tanh would be 5, but no kernel calls it), plus the CPU's 1.
public let transcendentalULPs = 4.0

/// `2γₙ`: how far two float32 sums of `n` terms, each in its own order, may differ, relative to the sum of the terms'
/// magnitudes.
public func sumBound(_ n: Int) -> Double {
    let nu = Double(n) * unitRoundoff
    return 2 * nu / (1 - nu)
}

/// One output of one case held against the CPU: the largest error and the bound it must stay within.
public struct Comparison: Sendable {
    /// `max |device − cpu| / magnitude` over the elements (∞ for a NaN where the CPU has a number, or a size mismatch).
    public let error: Double
    /// The bound: the case passes when `error ≤ tolerance`.
    public let tolerance: Double
    /// What was compared (the case and the output), and where the largest error is.
    public let label: String

    public init(error: Double, tolerance: Double, label: String) {
        (self.error, self.tolerance, self.label) = (error, tolerance, label)
    }

    public var passed: Bool { error <= tolerance }

    /// How close to its bound the error is (0 exact, 1 at the bound, > 1 failed): ranks cases with different bounds.
    public var ratio: Double {
        if error == 0 { return 0 }
        return tolerance > 0 ? error / tolerance : .infinity
    }

    /// How an element's error is scaled.
    public enum Magnitude: Sendable {
        /// By the largest |cpu| in the output (1 where all are 0).
        case normwise
        /// By one scale for every element: the largest magnitude of the terms a result is computed from, where the
        /// result may cancel far below them (normalization gradients).
        case scale(Double)
        /// By a magnitude per element (Σ|terms| of a GEMM); an element whose magnitude is 0 must match exactly.
        case componentwise([Float])
    }

    /// Compares `device` with the CPU's `reference`. Equal values (infinities of one sign, NaN with NaN) count as
    /// exact; a NaN on one side only is an infinite error.
    public static func measure(_ device: [Float], _ reference: [Float], magnitude: Magnitude = .normwise,
                               tolerance: Double, label: String) -> Comparison {
        guard device.count == reference.count else {
            return Comparison(error: .infinity, tolerance: tolerance,
                              label: "\(label): \(device.count) values from the device, \(reference.count) from the CPU")
        }
        var scale = 1.0
        if case .normwise = magnitude {
            let largest = reference.lazy.filter(\.isFinite).map { Double(abs($0)) }.max() ?? 0
            if largest > 0 { scale = largest }
        }
        if case .scale(let given) = magnitude { scale = given }
        if case .componentwise(let m) = magnitude, m.count != reference.count {
            return Comparison(error: .infinity, tolerance: tolerance, label: "\(label): \(m.count) magnitudes for \(reference.count) values")
        }
        var (worst, worstIndex) = (0.0, -1)
        for i in reference.indices {
            let (d, r) = (device[i], reference[i])
            if d == r || (d.isNaN && r.isNaN) { continue }
            let difference = abs(Double(d) - Double(r))
            let basis: Double = if case .componentwise(let m) = magnitude { Double(m[i]) } else { scale }
            let error = basis > 0 && difference.isFinite ? difference / basis : .infinity
            if !(error <= worst) { (worst, worstIndex) = (error.isNaN ? .infinity : error, i) }
        }
        let place = worstIndex < 0 ? "" : " (element \(worstIndex): device \(device[worstIndex]), CPU \(reference[worstIndex]))"
        return Comparison(error: worst, tolerance: tolerance, label: label + place)
    }

    /// Compares values that must agree bit for bit (up to the sign of zero and NaN payloads).
    public static func exact(_ device: [Float], _ reference: [Float], label: String) -> Comparison {
        measure(device, reference, magnitude: .componentwise(reference.map { abs($0) }), tolerance: 0, label: label)
    }
}
