// bfloat16 and IEEE half (float16) to and from float32, one value at a time and in bulk over little-endian byte
// buffers (the layout of safetensors data and of device buffers: 2 bytes per half, 4 per float, no alignment
// required). The bulk loops are branch-free integer code so the optimizer vectorizes them without F16C or
// AVX512-BF16 (the package is also built for plain x86-64); they run over whole models (100M+ elements) when one
// is converted, so they allocate nothing.
//
// Rounding is PyTorch's: `tensor.to(torch.bfloat16)` and `.to(torch.float16)` round to nearest, ties to even;
// values past the largest finite half become infinity; subnormals are kept (no flush to zero). NaN stays NaN:
// bfloat16 NaN is written as 0x7FC0 (c10's scalar `round_to_nearest_even`; PyTorch's AVX-512 copy loop writes
// 0xFFFF instead, so PyTorch itself has no single NaN pattern), float16 NaN keeps the sign and the top payload
// bits with the quiet bit set (what F16C's VCVTPS2PH writes). Widening to float32 is exact.

extension Float {
    /// The bfloat16 nearest to `self` (ties to even), as its bit pattern: sign, 8 exponent bits, 7 mantissa bits,
    /// the top half of the float32 pattern. NaN gives 0x7FC0; overflow gives ±infinity (0x7F80 / 0xFF80).
    @inlinable public var bfloat16Bits: UInt16 {
        let u = bitPattern
        let rounded = UInt16(truncatingIfNeeded: (u &+ 0x7FFF &+ ((u >> 16) & 1)) >> 16)
        return (u & 0x7FFF_FFFF) > 0x7F80_0000 ? 0x7FC0 : rounded
    }

    /// The float32 equal to the bfloat16 with bit pattern `bits` (exact: the pattern becomes the top half).
    @inlinable public init(bfloat16Bits bits: UInt16) {
        self.init(bitPattern: UInt32(bits) << 16)
    }

    /// The IEEE binary16 nearest to `self` (ties to even), as its bit pattern: sign, 5 exponent bits, 10 mantissa
    /// bits. Magnitudes from 65520 up give ±infinity; below 2⁻¹⁴ the result is subnormal (steps of 2⁻²⁴) or ±0.
    /// Equal to `Float16(self).bitPattern` for every non-NaN value, without needing F16C.
    @inlinable public var float16Bits: UInt16 {
        let u = bitPattern
        let sign = UInt16(truncatingIfNeeded: (u >> 16) & 0x8000)
        let a = u & 0x7FFF_FFFF
        // Normal halves: rebias the exponent (127 → 15) and round the 13 dropped mantissa bits to even; a carry
        // out of the mantissa correctly bumps the exponent.
        let r = a &- 0x3800_0000
        let normal = (r &+ 0x0FFF &+ ((r >> 13) & 1)) >> 13
        // Subnormal halves: adding 0.5 puts the unit 2⁻²⁴ in the float's last mantissa bit, so the FPU's own
        // round-to-nearest-even leaves round(|x| / 2⁻²⁴) in the low bits (0x400 when it rounds up to 2⁻¹⁴).
        let subnormal = (Float(bitPattern: a) + 0.5).bitPattern &- 0x3F00_0000
        let nan = 0x7E00 | ((a >> 13) & 0x3FF)
        let magnitude = a > 0x7F80_0000 ? nan : a >= 0x477F_F000 ? 0x7C00 : a >= 0x3880_0000 ? normal : subnormal
        return sign | UInt16(truncatingIfNeeded: magnitude)
    }

    /// The float32 equal to the IEEE binary16 with bit pattern `bits` (exact; NaN payloads are kept).
    @inlinable public init(float16Bits bits: UInt16) {
        let h = UInt32(bits)
        let sign = (h & 0x8000) << 16
        let exponent = (h >> 10) & 0x1F
        let mantissa = h & 0x3FF
        // Subnormal halves (exponent 0) are mantissa · 2⁻²⁴, exact in float32; 0x3380_0000 is 2⁻²⁴.
        let subnormal = (Float(mantissa) * Float(bitPattern: 0x3380_0000)).bitPattern
        let normal = ((exponent &+ 112) << 23) | (mantissa << 13)
        let special = 0x7F80_0000 | (mantissa << 13)
        self.init(bitPattern: sign | (exponent == 0 ? subnormal : exponent == 0x1F ? special : normal))
    }
}

/// Converts little-endian float32 values to little-endian bfloat16, rounding as `Float.bfloat16Bits`.
/// - Parameters:
///   - source: `4·n` bytes, any alignment.
///   - destination: `2·n` bytes, any alignment.
public func convertFloat32ToBFloat16(_ source: UnsafeRawBufferPointer, _ destination: UnsafeMutableRawBufferPointer) {
    let n = halfCount(source, destination)
    guard n > 0, let s = source.baseAddress, let d = destination.baseAddress else { return }
    for i in 0..<n {
        let value = Float(bitPattern: UInt32(littleEndian: s.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)))
        d.storeBytes(of: value.bfloat16Bits.littleEndian, toByteOffset: 2 * i, as: UInt16.self)
    }
}

/// Converts little-endian bfloat16 values to little-endian float32 (exact).
/// - Parameters:
///   - source: `2·n` bytes, any alignment.
///   - destination: `4·n` bytes, any alignment.
public func convertBFloat16ToFloat32(_ source: UnsafeRawBufferPointer, _ destination: UnsafeMutableRawBufferPointer) {
    let n = halfCount(destination, source)
    guard n > 0, let s = source.baseAddress, let d = destination.baseAddress else { return }
    for i in 0..<n {
        let bits = UInt16(littleEndian: s.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
        d.storeBytes(of: Float(bfloat16Bits: bits).bitPattern.littleEndian, toByteOffset: 4 * i, as: UInt32.self)
    }
}

/// Converts little-endian float32 values to little-endian IEEE binary16, rounding as `Float.float16Bits`.
/// - Parameters:
///   - source: `4·n` bytes, any alignment.
///   - destination: `2·n` bytes, any alignment.
public func convertFloat32ToFloat16(_ source: UnsafeRawBufferPointer, _ destination: UnsafeMutableRawBufferPointer) {
    let n = halfCount(source, destination)
    guard n > 0, let s = source.baseAddress, let d = destination.baseAddress else { return }
    for i in 0..<n {
        let value = Float(bitPattern: UInt32(littleEndian: s.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)))
        d.storeBytes(of: value.float16Bits.littleEndian, toByteOffset: 2 * i, as: UInt16.self)
    }
}

/// Converts little-endian IEEE binary16 values to little-endian float32 (exact).
/// - Parameters:
///   - source: `2·n` bytes, any alignment.
///   - destination: `4·n` bytes, any alignment.
public func convertFloat16ToFloat32(_ source: UnsafeRawBufferPointer, _ destination: UnsafeMutableRawBufferPointer) {
    let n = halfCount(destination, source)
    guard n > 0, let s = source.baseAddress, let d = destination.baseAddress else { return }
    for i in 0..<n {
        let bits = UInt16(littleEndian: s.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
        d.storeBytes(of: Float(float16Bits: bits).bitPattern.littleEndian, toByteOffset: 4 * i, as: UInt32.self)
    }
}

/// The element count of a float32 buffer and a half buffer that must hold the same number of elements.
@inline(__always)
private func halfCount(_ wide: some Collection<UInt8>, _ narrow: some Collection<UInt8>) -> Int {
    precondition(wide.count % 4 == 0 && narrow.count % 2 == 0 && wide.count / 4 == narrow.count / 2,
                 "half conversion: \(wide.count) float32 bytes do not match \(narrow.count) half bytes")
    return narrow.count / 2
}
