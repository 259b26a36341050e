// bitsandbytes' 8-bit blockwise quantization as its native CPU kernel computes it (csrc/cpu_ops.cpp,
// `quantize_cpu_impl`, bitsandbytes 0.50): what double quantization applies to the blocks' absmax minus their mean.
//
// Per block of `blocksize` consecutive values (the last may be short): absmax = max |v| (float32); a block whose
// absmax is 0 gets code 0 everywhere (the map's -0.993, harmless: it is multiplied by 0). Otherwise each value is
// normalized as `v · (1 / absmax)` (both float32 roundings), clamped to [-1, 1] and looked up in a 65536-entry
// table: index `trunc(((x + 1) · 0.5) · 65535 + 0.5)`, and entry i holds the code nearest to
// `-1 + 2i / 65535` by midpoint cuts (`0.5 · (code[j] + code[j+1])`, ties to the lower code). That table is what
// bitsandbytes uses, not the exact nearest code, so it is reproduced rather than improved on.

enum Blockwise8Bit {
    /// The lookup table for `BitsAndBytesCodebook.dynamic8Bit` (`build_quantize_lut`).
    static let dynamicTable: [UInt8] = lookupTable(BitsAndBytesCodebook.dynamic8Bit)

    static func lookupTable(_ code: [Float]) -> [UInt8] {
        precondition(code.count == 256, "an 8-bit code book has 256 entries, not \(code.count)")
        let midpoints = (0..<255).map { 0.5 * (code[$0] + code[$0 + 1]) }
        var table = [UInt8](repeating: 0, count: 65536)
        var index = 0
        for i in 0..<65536 {
            let value = -1 + (2 * Float(i)) / 65535
            while index < 255 && midpoints[index] < value { index += 1 }
            table[i] = UInt8(index)
        }
        return table
    }

    /// `norm_to_lut_index`: a normalized value's table index.
    @inline(__always) static func tableIndex(_ value: Float) -> Int {
        let x = value < -1 ? -1 : (1 < value ? 1 : value)
        return Int(((x + 1) * 0.5) * 65535 + 0.5)
    }

    /// Quantizes `values` in blocks of `blocksize` with the dynamic map: one code per value, one absmax per block.
    static func quantize(_ values: [Float], blocksize: Int) -> (codes: [UInt8], absmax: [Float]) {
        let n = values.count
        let blocks = (n + blocksize - 1) / blocksize
        var codes = [UInt8](repeating: 0, count: n)
        var absmax = [Float](repeating: 0, count: blocks)
        let table = dynamicTable
        for b in 0..<blocks {
            let range = (b * blocksize)..<min(n, (b + 1) * blocksize)
            var m: Float = 0
            for i in range { m = max(m, abs(values[i])) }
            absmax[b] = m
            guard m != 0 else { continue }  // codes stay 0
            let inverse = 1 / m
            for i in range { codes[i] = table[tableIndex(values[i] * inverse)] }
        }
        return (codes, absmax)
    }
}
