// Convert: elements from one float dtype to another (float32, bfloat16, float16), e.g. a bf16 weight to float32 and
// back around a merge, or a checkpoint's dtype to `--dtype` at load. The scalar rules below are the specification
// every backend's kernels follow bit for bit.

/// `destination[i] = source[i]` rounded to the destination's dtype (same element count; any float dtypes, the same
/// one included, which copies).
///
/// Rounding is to nearest, ties to even, as PyTorch's `.to(dtype)` rounds: a value past the largest finite one
/// becomes ±inf, and tiny values become subnormals or ±0. Widening (bf16 or f16 to f32) is exact. A NaN stays a
/// NaN with its sign (quieted, payload truncated, as x86's `vcvtneps2bf16` and `vcvtps2ph` do).
public struct Convert: BackendOp {
    public var owner: any Backend { destination.backend }
    public let source: Tensor, destination: Tensor

    public init(source: Tensor, destination: Tensor) throws {
        try destination.backend.requireOwned("convert", source, destination)
        try source.requireDType(DType.floatingPoint, op: "convert", operand: "source")
        try destination.requireDType(DType.floatingPoint, op: "convert", operand: "destination")
        guard source.count == destination.count else {
            throw LoRAError.shapeMismatch(
                "convert: source \(describe(source.shape)) and destination \(describe(destination.shape)) differ in size")
        }
        guard source.storage !== destination.storage || source.dtype == destination.dtype else {
            throw LoRAError.invalidArgument("convert: source and destination of different dtypes cannot share storage")
        }
        (self.source, self.destination) = (source, destination)
    }

    /// A bfloat16's bit pattern as float32 (exact).
    @inlinable public static func float(bfloat16 bits: UInt16) -> Float { Float(bitPattern: UInt32(bits) << 16) }

    /// A float32 rounded to bfloat16 bits, to nearest even; a NaN stays a NaN (sign kept, quiet bit set).
    @inlinable public static func bfloat16(_ value: Float) -> UInt16 {
        let bits = value.bitPattern
        if value.isNaN { return UInt16(truncatingIfNeeded: bits >> 16) | 0x0040 }
        return UInt16(truncatingIfNeeded: (bits &+ 0x7FFF &+ ((bits >> 16) & 1)) >> 16)
    }

    /// A float16's bit pattern as float32 (exact).
    @inlinable public static func float(float16 bits: UInt16) -> Float { Float(Float16(bitPattern: bits)) }

    /// A float32 rounded to float16 bits, to nearest even (IEEE conversion).
    @inlinable public static func float16(_ value: Float) -> UInt16 { Float16(value).bitPattern }
}
