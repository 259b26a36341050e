// NF4 quantization on the host, byte for byte what `bitsandbytes.functional.quantize_4bit(w, blocksize,
// quant_type="nf4", compress_statistics)` computes on the CPU (bitsandbytes 0.50: the torch implementation in
// backends/default/ops.py for the 4 bits, the native kernel for double quantization's 8 bits), its exact
// dequantization, and the upload of the packed result to a backend as an `NF4Weight`.
//
// Layout (LoRARuntime/NF4.swift): the weight `[rows, columns]` flattened row-major, cut into blocks of `blocksize`
// consecutive elements (a block may span rows; the last may be short and has its own absmax); two 4-bit codes per
// byte, the first element in the high nibble; an odd count leaves a padding code in the last low nibble.
//
// bitsandbytes' 4-bit rules reproduced here:
// - absmax = max |x| over the block, stored as is (0 for an all-zero full block), except a short last block's,
//   which is stored clamped to at least float32(1e-38) (a tiny subnormal; torch clamps it before storing);
// - full blocks are normalized as `x · (1 / max(absmax, 1e-38))`, the short last block as `x / max(absmax, 1e-38)`
//   (a true division: the two can round differently), then clamped to [-1, 1];
// - the code is the number of NF4 midpoints `(code[i] + code[i+1]) / 2` strictly below the normalized value
//   (`torch.bucketize`, right=False): a value exactly on a midpoint takes the lower code;
// - the padding nibble of an odd count is the code of 0 (7), as bitsandbytes pads the normalized values with 0.
// Double quantization: offset = torch's float32 mean of the absmax (TorchFloat32Mean.swift), then `absmax - offset`
// quantized by the 8-bit dynamic map in blocks of 256 (Blockwise8Bit.swift).
import LoRAFormats
import LoRARuntime

/// A 4-bit NormalFloat weight `[rows, columns]` in host memory: packed codes and block statistics exactly as
/// bitsandbytes stores them (`quant_state` of a `Params4bit`).
public struct NF4HostWeight: Sendable, Equatable {
    /// How the blocks' absmax are stored.
    public enum Absmax: Sendable, Equatable {
        /// float32 `[blockCount]`.
        case float32([Float])
        /// Double quantization: uint8 `codes` `[blockCount]` into `map` (float32 `[256]`), scaled per group of
        /// `blocksize` codes by `scales` (float32 `[ceil(blockCount / blocksize)]`), plus `offset`. bitsandbytes
        /// writes these as `absmax`, `nested_quant_map`, `nested_absmax`, `nested_offset`, `nested_blocksize`.
        case doubleQuantized(codes: [UInt8], map: [Float], scales: [Float], offset: Float, blocksize: Int)
    }

    /// Block sizes bitsandbytes' `quantize_4bit` accepts.
    public static let blocksizes = [32, 64, 128, 256, 512, 1024, 2048, 4096]
    /// The block size of double quantization (`quantize_blockwise(..., blocksize=256)` in `quantize_4bit`).
    public static let nestedBlocksize = 256

    /// Logical shape `[rows, columns]`: `[out, in]` for a linear layer (GPT-2's Conv1D weights are quantized
    /// transposed, as transformers does).
    public let rows: Int, columns: Int
    public let blocksize: Int
    /// uint8 `[(rows·columns + 1) / 2]`: two codes per byte, the first element in the high nibble.
    public let codes: [UInt8]
    /// float32 `[16]`: the code book (`quant_map`).
    public let map: [Float]
    public let absmax: Absmax
    /// The dtype the weight had when it was quantized (quant_state `dtype`): float32, bfloat16 or float16.
    /// bitsandbytes dequantizes to it: `dequantize()` and the device weight round each element to it.
    public let dtype: DType

    public var count: Int { rows * columns }
    public var blockCount: Int { (count + blocksize - 1) / blocksize }
    public var isDoubleQuantized: Bool { if case .doubleQuantized = absmax { true } else { false } }

    /// Bytes of the packed weight and its statistics (what `weight_bits_per_param` counts).
    public var byteCount: Int {
        switch absmax {
        case .float32(let a): codes.count + 4 * (map.count + a.count)
        case .doubleQuantized(let c, let m, let s, _, _): codes.count + 4 * map.count + c.count + 4 * (m.count + s.count)
        }
    }

    /// Assembles a weight from its parts, checking every size against the shape and block sizes (a file's parts are
    /// checked with the tensor names by `SafeTensorsCheckpoint.readNF4`).
    public init(rows: Int, columns: Int, blocksize: Int, codes: [UInt8], map: [Float], absmax: Absmax,
                dtype: DType = .float32) throws {
        let (elements, overflow) = rows.multipliedReportingOverflow(by: columns)
        guard rows >= 1, columns >= 1, !overflow, elements <= Int(Int32.max) else {
            throw LoRAError.shapeMismatch("nf4 weight: shape [\(rows), \(columns)] must be positive and below 2^31 elements")
        }
        guard Self.blocksizes.contains(blocksize) else {
            throw LoRAError.invalidArgument("nf4 weight: blocksize \(blocksize) is not one of bitsandbytes' \(Self.blocksizes)")
        }
        guard dtype.isFloatingPoint else { throw LoRAError.invalidArgument("nf4 weight: dtype \(dtype) is not a float type") }
        let blocks = (rows * columns + blocksize - 1) / blocksize
        func check(_ name: String, _ actual: Int, _ expected: Int) throws {
            guard actual == expected else {
                throw LoRAError.shapeMismatch("nf4 weight [\(rows), \(columns)] in blocks of \(blocksize): \(name) has \(actual) elements, expected \(expected)")
            }
        }
        try check("codes", codes.count, (rows * columns + 1) / 2)
        try check("map", map.count, 16)
        switch absmax {
        case .float32(let a): try check("absmax", a.count, blocks)
        case .doubleQuantized(let c, let m, let s, let offset, let nested):
            guard nested >= 1, offset.isFinite else {
                throw LoRAError.invalidArgument("nf4 weight: nested blocksize \(nested) / offset \(offset) invalid")
            }
            try check("absmax codes", c.count, blocks)
            try check("nested map", m.count, 256)
            try check("nested absmax", s.count, (blocks + nested - 1) / nested)
        }
        (self.rows, self.columns, self.blocksize, self.codes, self.map, self.absmax, self.dtype) =
            (rows, columns, blocksize, codes, map, absmax, dtype)
    }

    // MARK: - Quantization

    /// Quantizes `values` (`[rows, columns]`, row-major) as `bitsandbytes.functional.quantize_4bit(w, blocksize,
    /// quant_type="nf4", compress_statistics: doubleQuantization)` does on the CPU, byte for byte.
    /// - Parameters:
    ///   - blocksize: one of `blocksizes` (bitsandbytes' 32...4096; transformers uses 64).
    ///   - dtype: the source weight's dtype, recorded as quant_state `dtype` (bitsandbytes quantizes a bf16 or f16
    ///     weight through its exact float32 values, so only the record differs).
    ///   - meanThreads: torch's intra-op thread count to reproduce for the mean of the absmax (double quantization);
    ///     it changes the result only for weights of more than 32768 blocks (2M elements at blocksize 64), where
    ///     torch's float32 sum splits the work per thread. 1 gives `torch.set_num_threads(1)`'s result.
    ///   - name: what messages call the weight (a tensor name).
    /// - Throws: `LoRAError.invalidArgument` for a blocksize bitsandbytes does not accept or a non-finite element.
    public static func quantize(_ values: UnsafeBufferPointer<Float>, rows: Int, columns: Int, blocksize: Int = 64,
                                doubleQuantization: Bool = true, dtype: DType = .float32, meanThreads: Int = 1,
                                name: String = "weight") throws -> NF4HostWeight {
        precondition(rows >= 1 && columns >= 1 && values.count == rows * columns,
                     "NF4HostWeight.quantize: \(values.count) values for [\(rows), \(columns)]")
        guard blocksizes.contains(blocksize) else {
            throw LoRAError.invalidArgument("\(name): NF4 blocksize \(blocksize) is not one of bitsandbytes' \(blocksizes.map(String.init).joined(separator: ", "))")
        }
        guard dtype.isFloatingPoint else { throw LoRAError.invalidArgument("\(name): dtype \(dtype) is not a float type") }
        let (codes, blockAbsmax) = try quantize4Bit(values, blocksize: blocksize, name: name)
        let absmax: Absmax
        if doubleQuantization {
            let offset = blockAbsmax.withUnsafeBufferPointer { torchFloat32Mean($0, threads: max(1, meanThreads)) }
            let (nestedCodes, scales) = Blockwise8Bit.quantize(blockAbsmax.map { $0 - offset }, blocksize: nestedBlocksize)
            absmax = .doubleQuantized(codes: nestedCodes, map: BitsAndBytesCodebook.dynamic8Bit, scales: scales,
                                      offset: offset, blocksize: nestedBlocksize)
        } else {
            absmax = .float32(blockAbsmax)
        }
        return try NF4HostWeight(rows: rows, columns: columns, blocksize: blocksize, codes: codes,
                                 map: BitsAndBytesCodebook.nf4, absmax: absmax, dtype: dtype)
    }

    /// `quantize` of an array.
    public static func quantize(_ values: [Float], rows: Int, columns: Int, blocksize: Int = 64,
                                doubleQuantization: Bool = true, dtype: DType = .float32, meanThreads: Int = 1,
                                name: String = "weight") throws -> NF4HostWeight {
        try values.withUnsafeBufferPointer {
            try quantize($0, rows: rows, columns: columns, blocksize: blocksize, doubleQuantization: doubleQuantization,
                         dtype: dtype, meanThreads: meanThreads, name: name)
        }
    }

    /// The 4-bit half: packed codes and each block's float32 absmax (see the file header for the rules).
    static func quantize4Bit(_ x: UnsafeBufferPointer<Float>, blocksize: Int,
                             name: String) throws -> (codes: [UInt8], absmax: [Float]) {
        let n = x.count
        let blocks = (n + blocksize - 1) / blocksize
        let code = BitsAndBytesCodebook.nf4
        let midpoints = (0..<15).map { (code[$0] + code[$0 + 1]) / 2 }
        let floor = Float(1e-38)  // torch's clamp(min=1e-38): the scalar becomes this float32 subnormal
        var absmax = [Float](repeating: 0, count: blocks)
        var packed = [UInt8](repeating: 0, count: (n + 1) / 2)
        var scratch = [UInt8](repeating: 7, count: blocksize + 1)  // + 1: the padding nibble of an odd count
        try packed.withUnsafeMutableBufferPointer { packed in
            try scratch.withUnsafeMutableBufferPointer { q in
                try midpoints.withUnsafeBufferPointer { mids in
                    for b in 0..<blocks {
                        let start = b * blocksize, length = min(blocksize, n - start)
                        let block = UnsafeBufferPointer(rebasing: x[start..<(start + length)])
                        // max |x| on the bit patterns (for non-negative floats integer order is float order) and a
                        // count of all-ones exponents (inf, NaN): integer reductions the compiler vectorizes.
                        var maxBits: UInt32 = 0, nonFinite: UInt32 = 0
                        for v in block {
                            let bits = v.bitPattern & 0x7FFF_FFFF
                            maxBits = max(maxBits, bits)
                            nonFinite |= bits >= 0x7F80_0000 ? 1 : 0
                        }
                        let m = Float(bitPattern: maxBits)
                        guard nonFinite == 0 else {
                            let i = block.firstIndex { !$0.isFinite }!
                            throw LoRAError.invalidArgument("\(name): element \(start + i) is \(block[i]); NF4 quantization needs finite values")
                        }
                        if length == blocksize {
                            absmax[b] = m
                            let inverse = 1 / max(m, floor)
                            nf4Codes(block.baseAddress!, count: length, scale: inverse, divide: false, mids.baseAddress!, q.baseAddress!)
                        } else {
                            let divisor = max(m, floor)
                            absmax[b] = divisor
                            nf4Codes(block.baseAddress!, count: length, scale: divisor, divide: true, mids.baseAddress!, q.baseAddress!)
                            q[length] = 7  // bitsandbytes pads the normalized values with 0, whose code is 7
                        }
                        for i in 0..<((length + 1) / 2) { packed[start / 2 + i] = q[2 * i] << 4 | q[2 * i + 1] }
                    }
                }
            }
        }
        return (packed, absmax)
    }

    /// NF4 codes of `count` values times `scale` (or divided by it, for a short last block): the number of midpoints
    /// strictly below each normalized value (`torch.bucketize`, right=False). bitsandbytes clamps to [-1, 1] first;
    /// that cannot change the count (every midpoint lies inside), so it is skipped. A midpoint m is below s exactly
    /// when `m - s` is negative: an exact tie gives +0, a smaller m a negative difference (exact near the tie), so
    /// the count is a sum of sign bits, which vectorizes (compare-and-select chains did not: 35 M values/s).
    @inline(__always) private static func nf4Codes(_ x: UnsafePointer<Float>, count: Int, scale: Float, divide: Bool,
                                                   _ m: UnsafePointer<Float>, _ out: UnsafeMutablePointer<UInt8>) {
        var i = 0
        if !divide {
            let m0 = SIMD16(repeating: m[0]), m1 = SIMD16(repeating: m[1]), m2 = SIMD16(repeating: m[2])
            let m3 = SIMD16(repeating: m[3]), m4 = SIMD16(repeating: m[4]), m5 = SIMD16(repeating: m[5])
            let m6 = SIMD16(repeating: m[6]), m7 = SIMD16(repeating: m[7]), m8 = SIMD16(repeating: m[8])
            let m9 = SIMD16(repeating: m[9]), m10 = SIMD16(repeating: m[10]), m11 = SIMD16(repeating: m[11])
            let m12 = SIMD16(repeating: m[12]), m13 = SIMD16(repeating: m[13]), m14 = SIMD16(repeating: m[14])
            @inline(__always) func sign(_ d: SIMD16<Float>) -> SIMD16<UInt32> { unsafeBitCast(d, to: SIMD16<UInt32>.self) &>> 31 }
            while i + 16 <= count {
                let s = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD16<Float>.self) * scale
                var q = sign(m0 - s) &+ sign(m1 - s) &+ sign(m2 - s) &+ sign(m3 - s) &+ sign(m4 - s)
                q &+= sign(m5 - s) &+ sign(m6 - s) &+ sign(m7 - s) &+ sign(m8 - s) &+ sign(m9 - s)
                q &+= sign(m10 - s) &+ sign(m11 - s) &+ sign(m12 - s) &+ sign(m13 - s) &+ sign(m14 - s)
                UnsafeMutableRawPointer(out + i).storeBytes(of: SIMD16<UInt8>(truncatingIfNeeded: q), as: SIMD16<UInt8>.self)
                i += 16
            }
        }
        for j in i..<count {
            let s = divide ? x[j] / scale : x[j] * scale
            var q: UInt8 = 0
            for k in 0..<15 { q &+= m[k] < s ? 1 : 0 }
            out[j] = q
        }
    }

    // MARK: - Dequantization

    /// Each block's absmax in float32: as stored, or `map[code] · scale + offset` (multiply rounded, then add).
    public func blockAbsmax() -> [Float] {
        switch absmax {
        case .float32(let a): return a
        case .doubleQuantized(let c, let m, let s, let offset, let nested):
            return c.indices.map { m[Int(c[$0])] * s[$0 / nested] + offset }
        }
    }

    /// The weight `[rows, columns]` row-major, as float32 values: element e is `map[code(e)] · absmax(e / blocksize)`
    /// in float32, rounded to `dtype` (to nearest even; float32: not rounded), exactly as bitsandbytes' flat-block
    /// dequantization (`_dequantize_4bit_compute`: the float32 product, then `.to(dtype)`) computes it.
    public func dequantize() -> [Float] {
        let scales = blockAbsmax()
        let n = count
        let round: (Float) -> Float = switch dtype {
        case .bfloat16: { Convert.float(bfloat16: Convert.bfloat16($0)) }
        case .float16: { Convert.float(float16: Convert.float16($0)) }
        default: { $0 }
        }
        return [Float](unsafeUninitializedCapacity: n) { out, initialized in
            for e in 0..<n {
                let byte = codes[e >> 1]
                let q = e & 1 == 0 ? byte >> 4 : byte & 0xF
                out[e] = round(map[Int(q)] * scales[e / blocksize])
            }
            initialized = n
        }
    }

    // MARK: - Device

    /// Uploads the packed weight and its statistics to `backend`: codes uint8 `[(n+1)/2]`, map float32 `[16]`,
    /// absmax float32 `[blocks]` or (double quantization) codes uint8 `[blocks]`, map float32 `[256]`, scales
    /// float32 `[nestedBlocks]`; `dtype` goes with it. No float copy of the weight is made.
    public func upload(to backend: any Backend) throws -> NF4Weight {
        func bytes(_ values: [UInt8]) throws -> Tensor {
            try values.withUnsafeBytes { try backend.upload(bytes: $0, dtype: .uint8, shape: [values.count]) }
        }
        let deviceAbsmax: NF4Weight.Absmax
        switch absmax {
        case .float32(let a): deviceAbsmax = .float32(try backend.upload(a, shape: [a.count]))
        case .doubleQuantized(let c, let m, let s, let offset, let nested):
            deviceAbsmax = .doubleQuantized(codes: try bytes(c), map: try backend.upload(m, shape: [m.count]),
                                            scales: try backend.upload(s, shape: [s.count]), offset: offset, blocksize: nested)
        }
        return try NF4Weight(rows: rows, columns: columns, blocksize: blocksize, codes: try bytes(codes),
                             map: try backend.upload(map, shape: [16]), absmax: deviceAbsmax, dtype: dtype)
    }

    /// Downloads a device weight (the inverse of `upload`, its `dtype` included), e.g. to write it to a file.
    public init(downloading weight: NF4Weight) throws {
        let backend = weight.backend
        let absmax: Absmax
        switch weight.absmax {
        case .float32(let a): absmax = .float32(try backend.download(a))
        case .doubleQuantized(let c, let m, let s, let offset, let nested):
            absmax = .doubleQuantized(codes: try backend.downloadBytes(c), map: try backend.download(m),
                                      scales: try backend.download(s), offset: offset, blocksize: nested)
        }
        try self.init(rows: weight.rows, columns: weight.columns, blocksize: weight.blocksize,
                      codes: try backend.downloadBytes(weight.codes), map: try backend.download(weight.map),
                      absmax: absmax, dtype: weight.dtype)
    }
}
