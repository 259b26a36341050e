// A small seeded generator for parameter initialization. Initial values are drawn on the host and uploaded,
// so the same seed gives the same parameters on every device.
import Foundation

/// SplitMix64: fast, seedable, and good enough for initialization (not for cryptography).
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    /// A generator of its own for each name under one seed (a model's random tensors, made one at a time in any
    /// order): the seed mixed with the name's 64-bit FNV-1a hash.
    public init(seed: UInt64, name: String) {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in name.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01B3 }
        state = seed ^ hash
    }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// `count` values uniform in `[-bound, bound)`.
    public mutating func uniform(count: Int, bound: Float) -> [Float] {
        (0..<count).map { _ in Float.random(in: -bound..<bound, using: &self) }
    }

    /// `count` values from a normal distribution with mean 0 (Box–Muller).
    public mutating func normal(count: Int, standardDeviation: Float) -> [Float] {
        (0..<count).map { _ in
            let u1 = Double.random(in: Double.ulpOfOne..<1, using: &self)
            let u2 = Double.random(in: 0..<1, using: &self)
            return Float(sqrt(-2 * log(u1)) * cos(2 * Double.pi * u2)) * standardDeviation
        }
    }
}
