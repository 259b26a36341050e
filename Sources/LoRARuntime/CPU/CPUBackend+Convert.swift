// CPU dtype conversion: `Convert` in chunks over the pool, and the row converters the typed ops share (the GEMM's
// panel packing, the embedding lookup). 16 lanes at a time: bfloat16 widens with a shift and narrows with integer
// rounding; float16 goes through Swift's Float16 (F16C's vcvtph2ps / vcvtps2ph where the build targets them).

/// A 16-bit float dtype's 16 lanes as floats (exact).
@inline(__always) func widen(_ bits: SIMD16<UInt16>, bfloat16: Bool) -> Vector {
    if bfloat16 { return unsafeBitCast(SIMD16<UInt32>(truncatingIfNeeded: bits) &<< 16, to: Vector.self) }
    return Vector(unsafeBitCast(bits, to: SIMD16<Float16>.self))
}

/// 8 lanes of a 16-bit float dtype as floats (exact).
@inline(__always) func widen(_ bits: SIMD8<UInt16>, bfloat16: Bool) -> SIMD8<Float> {
    if bfloat16 { return unsafeBitCast(SIMD8<UInt32>(truncatingIfNeeded: bits) &<< 16, to: SIMD8<Float>.self) }
    return SIMD8<Float>(unsafeBitCast(bits, to: SIMD8<Float16>.self))
}

/// One 16-bit float as a float (exact).
@inline(__always) func widen(_ bits: UInt16, bfloat16: Bool) -> Float {
    bfloat16 ? Convert.float(bfloat16: bits) : Convert.float(float16: bits)
}

/// 16 floats rounded to a 16-bit float dtype's bits (`Convert`'s rules).
@inline(__always) func narrow(_ v: Vector, bfloat16: Bool) -> SIMD16<UInt16> {
    guard bfloat16 else { return unsafeBitCast(SIMD16<Float16>(v), to: SIMD16<UInt16>.self) }
    let bits = unsafeBitCast(v, to: SIMD16<UInt32>.self)
    var rounded = (bits &+ 0x7FFF &+ ((bits &>> 16) & 1)) &>> 16
    rounded.replace(with: (bits &>> 16) | 0x0040, where: (bits & 0x7FFF_FFFF) .> 0x7F80_0000)  // NaN
    return SIMD16<UInt16>(truncatingIfNeeded: rounded)
}

enum ElementRows {
    /// `count` elements of a float dtype at `source` as floats into `destination`.
    @inline(__always)
    static func widen(_ source: UnsafeRawPointer, _ dtype: DType, into destination: UnsafeMutablePointer<Float>, count: Int) {
        if dtype == .float32 { return destination.update(from: source.assumingMemoryBound(to: Float.self), count: count) }
        let (halves, bf16) = (source.assumingMemoryBound(to: UInt16.self), dtype == .bfloat16)
        let full = count & ~15
        for j in stride(from: 0, to: full, by: 16) {
            storeVector(LoRARuntime.widen(UnsafeRawPointer(halves + j).loadUnaligned(as: SIMD16<UInt16>.self), bfloat16: bf16),
                        destination + j)
        }
        for j in full..<count { destination[j] = LoRARuntime.widen(halves[j], bfloat16: bf16) }
    }

    /// `count` floats rounded into a float dtype at `destination`.
    @inline(__always)
    static func narrow(_ source: UnsafePointer<Float>, into destination: UnsafeMutableRawPointer, _ dtype: DType, count: Int) {
        if dtype == .float32 { return destination.assumingMemoryBound(to: Float.self).update(from: source, count: count) }
        let (halves, bf16) = (destination.assumingMemoryBound(to: UInt16.self), dtype == .bfloat16)
        let full = count & ~15
        for j in stride(from: 0, to: full, by: 16) {
            UnsafeMutableRawPointer(halves + j).storeBytes(of: LoRARuntime.narrow(loadVector(source + j), bfloat16: bf16),
                                                           as: SIMD16<UInt16>.self)
        }
        for j in full..<count { halves[j] = bf16 ? Convert.bfloat16(source[j]) : Convert.float16(source[j]) }
    }
}

extension CPUBackend {
    public func convert(_ op: Convert) throws {
        try requireOwned(op)
        let (from, to) = (op.source.dtype, op.destination.dtype)
        if from == to { return try copy(op.source, to: op.destination) }
        let (src, dst) = (UnsafeRawPointer(bytes(op.source)), bytes(op.destination))
        let (fromSize, toSize) = (from.size, to.size)
        forEachChunk(count: op.source.count) { range in
            // Through floats, 1024 at a time (both sides 16-bit: bf16 ↔ f16, rounded once, from the exact float).
            let buffer = ThreadScratch.current(.part, floats: 1024)
            for start in stride(from: range.lowerBound, to: range.upperBound, by: 1024) {
                let count = min(1024, range.upperBound - start)
                let (source, destination) = (src + start * fromSize, dst + start * toSize)
                if from == .float32 {
                    ElementRows.narrow(source.assumingMemoryBound(to: Float.self), into: destination, to, count: count)
                } else if to == .float32 {
                    ElementRows.widen(source, from, into: destination.assumingMemoryBound(to: Float.self), count: count)
                } else {
                    ElementRows.widen(source, from, into: buffer, count: count)
                    ElementRows.narrow(buffer, into: destination, to, count: count)
                }
            }
        }
    }
}
