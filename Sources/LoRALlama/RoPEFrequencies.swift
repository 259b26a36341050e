// RoPE inverse frequencies, attention scaling and cos/sin tables, computed as transformers 5.24 computes them on
// the CPU (modeling_rope_utils.py `_compute_*_parameters`, LlamaRotaryEmbedding.forward), step by step in the same
// precision: what torch does on float32 tensors is done here in Float, one rounding per torch op, in torch's order;
// what runs on Python floats (YaRN's correction range, llama3's wavelength bounds, the mscale) is done in Double
// and cast to Float where torch casts the scalar. `base ** exponents` is float32 pow rounded as torch's CPU kernel
// rounds it (TorchFloat32Pow.swift), so `inverseFrequencies()` is bitwise transformers' `inv_freq`.
//
// Table layout: `cos`/`sin` are [positions, headDim/2] row-major. transformers' full row is that half row twice,
// `emb = cat(freqs, freqs)`, for the rotate-half convention: x·cos + rotate_half(x)·sin with
// rotate_half(x) = cat(−x[d/2...], x[..<d/2]).
import Foundation

extension LlamaConfig {
    /// inv_freq, length headDim/2: θ^(−2i/d) for default RoPE, rescaled by `ropeScaling`. Bitwise equal to
    /// transformers' `LlamaRotaryEmbedding.inv_freq` computed on an AVX-512 CPU (see TorchFloat32Pow.swift for the
    /// one step whose rounding depends on the CPU).
    public func inverseFrequencies() -> [Float] {
        let powers = ropePowers()
        let inverse = powers.map { 1 / $0 }  // `1.0 / t` is t.reciprocal() * 1.0: one rounding
        switch ropeScaling {
        case .none:
            return inverse
        case .linear(let factor):
            let f = Float(factor)
            return inverse.map { $0 / f }  // `inv_freq /= factor`
        case .llama3(let p):
            return Self.llama3InverseFrequencies(inverse, p)
        case .yarn(let p):
            return yarnInverseFrequencies(powers: powers, p)
        }
    }

    /// The factor transformers multiplies cos and sin by (`attention_scaling`): 1, except for YaRN, where it is
    /// `attention_factor` or 0.1·ln(factor) + 1 (with mscale: the ratio of two such terms), computed in double
    /// and applied as a float32 scalar.
    public var attentionScaling: Float {
        guard case .yarn(let p) = ropeScaling else { return 1 }
        if let a = p.attentionFactor { return Float(a) }
        func mscale(_ scale: Double, _ m: Double = 1) -> Double { scale <= 1 ? 1 : 0.1 * m * Foundation.log(scale) + 1 }
        if let m = p.mscale, let all = p.mscaleAllDim { return Float(mscale(p.factor, m) / mscale(p.factor, all)) }
        return Float(mscale(p.factor))
    }

    /// cos and sin for positions 0..<positions, each [positions, headDim/2] (see the file header for the layout).
    public func cosSinTables(positions: Int) -> (cos: [Float], sin: [Float]) {
        precondition(positions >= 0, "cosSinTables: negative position count \(positions)")
        return cosSinTables(positions: Array(0..<positions))
    }

    /// cos and sin for the given positions, each [positions.count, headDim/2], as LlamaRotaryEmbedding.forward
    /// computes them: `freqs = position.float() · inv_freq` (one float32 multiply), then cos and sin in float32,
    /// times `attentionScaling`.
    ///
    /// torch evaluates float32 cos/sin with SLEEF's 1-ulp kernels (and the C library on a tail of each row
    /// block), so they are not correctly rounded; here each is the double-precision cos/sin of the same float32
    /// angle rounded to Float (correctly rounded but for rare double-rounding cases). The two agree to within
    /// 1 ulp of the value before scaling, 2 ulp after (measured against transformers in LoRALlamaTests).
    public func cosSinTables(positions: [Int]) -> (cos: [Float], sin: [Float]) {
        let inverse = inverseFrequencies()
        let scale = attentionScaling
        var cosTable = [Float](), sinTable = [Float]()
        cosTable.reserveCapacity(positions.count * inverse.count)
        sinTable.reserveCapacity(positions.count * inverse.count)
        for position in positions {
            precondition(position >= 0 && position <= 1 << 24, "cosSinTables: position \(position) is not exact in float32")
            let p = Float(position)
            for f in inverse {
                let angle = Double(p * f)
                cosTable.append(Float(Foundation.cos(angle)) * scale)
                sinTable.append(Float(Foundation.sin(angle)) * scale)
            }
        }
        return (cosTable, sinTable)
    }

    /// θ^(2i/d) for i in 0..<d/2: `base ** (torch.arange(0, dim, 2).float() / dim)`.
    func ropePowers() -> [Float] {
        // The even integers are exact in float32; the division rounds once, as torch's does.
        let exponents = (0..<headDim / 2).map { Float(2 * $0) / Float(headDim) }
        return torchPow(base: ropeTheta, exponents: exponents)
    }

    /// `_compute_llama3_parameters`: wavelengths above original/low_freq_factor are divided by `factor`, those below
    /// original/high_freq_factor kept, those between blended with a ramp in original/wavelength.
    static func llama3InverseFrequencies(_ inverse: [Float], _ p: Llama3RoPEScaling) -> [Float] {
        let factor = Float(p.factor)
        let twoPi = Float(2 * Double.pi)
        // Python-float bounds, compared against float32 tensors after torch casts the scalar to float32.
        let lowWavelength = Float(Double(p.originalMaxPositions) / p.lowFreqFactor)
        let highWavelength = Float(Double(p.originalMaxPositions) / p.highFreqFactor)
        let context = Float(p.originalMaxPositions), low = Float(p.lowFreqFactor)
        let span = Float(p.highFreqFactor - p.lowFreqFactor)
        return inverse.map { f in
            let wavelength = (1 / f) * twoPi  // `2 * math.pi / inv_freq`: reciprocal, then the scalar multiply
            let scaled = wavelength > lowWavelength ? f / factor : f
            let smooth = ((1 / wavelength) * context - low) / span
            let smoothed = ((1 - smooth) * scaled) / factor + smooth * scaled
            let medium = !(wavelength < highWavelength) && !(wavelength > lowWavelength)
            return medium ? smoothed : scaled
        }
    }

    /// `_compute_yarn_parameters`: dimensions rotating fewer than beta_slow times over the original context are
    /// interpolated (divided by `factor`), more than beta_fast times extrapolated (kept), with a linear ramp between.
    func yarnInverseFrequencies(powers: [Float], _ p: YaRNRoPEScaling) -> [Float] {
        let dim = Double(headDim)
        let factor = Float(p.factor)
        // find_correction_dim / find_correction_range, in Python floats.
        func correctionDim(_ rotations: Double) -> Double {
            (dim * Foundation.log(Double(p.originalMaxPositions) / (rotations * 2 * Double.pi))) / (2 * Foundation.log(ropeTheta))
        }
        var low = correctionDim(p.betaFast), high = correctionDim(p.betaSlow)
        if p.truncate { (low, high) = (low.rounded(.down), high.rounded(.up)) }
        (low, high) = (max(low, 0), min(high, dim - 1))
        if low == high { high += 0.001 }  // linear_ramp_factor's guard against a zero-width ramp
        let lowF = Float(low), width = Float(high - low)
        return powers.indices.map { i in
            let ramp = min(max((Float(i) - lowF) / width, 0), 1)
            let extrapolationFactor = 1 - ramp
            let extrapolation = 1 / powers[i]
            let interpolation = 1 / (factor * powers[i])
            return interpolation * (1 - extrapolationFactor) + extrapolation * extrapolationFactor
        }
    }
}
