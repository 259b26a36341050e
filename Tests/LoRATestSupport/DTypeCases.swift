// Typed-tensor test helpers shared by the CPU and OpenCL suites: host-side rounding to bf16/f16 (with `Convert`'s
// scalar rules), the PyTorch conversion fixture (Tests/Fixtures/dtype-conversions.json, by make_dtype_fixtures.py),
// and conversions run on a backend through bytes.
import Foundation
import SwiftLoRA

/// `values` rounded to `dtype`: the little-endian bytes to upload, and the rounded values as floats (exact).
public func typed(_ values: [Float], _ dtype: DType) -> (bytes: [UInt8], upcast: [Float]) {
    switch dtype {
    case .float32:
        return (values.withUnsafeBytes { Array($0) }, values)
    case .bfloat16, .float16:
        let bits = values.map { dtype == .bfloat16 ? Convert.bfloat16($0) : Convert.float16($0) }
        let upcast = bits.map { dtype == .bfloat16 ? Convert.float(bfloat16: $0) : Convert.float(float16: $0) }
        return (bits.withUnsafeBytes { Array($0) }, upcast)
    default:
        preconditionFailure("typed(_:_:) takes float dtypes, not \(dtype)")
    }
}

/// A tensor of `dtype` on `backend` holding `values` rounded to it.
public func uploadTyped(_ values: [Float], _ dtype: DType, shape: [Int], on backend: any Backend) throws -> Tensor {
    try typed(values, dtype).bytes.withUnsafeBytes { try backend.upload(bytes: $0, dtype: dtype, shape: shape) }
}

/// What PyTorch gives for the fixture's float32 bit patterns (no NaN; see make_dtype_fixtures.py).
public struct DTypeFixture: Decodable, Sendable {
    public let float32: [UInt32]
    public let bfloat16: [UInt16]
    public let float16: [UInt16]
    public let bfloat16AsFloat32: [UInt32]
    public let float16AsFloat32: [UInt32]
    public let bfloat16ToFloat16: [UInt16]
    public let float16ToBfloat16: [UInt16]

    enum CodingKeys: String, CodingKey {
        case float32, bfloat16, float16
        case bfloat16AsFloat32 = "bfloat16_as_float32", float16AsFloat32 = "float16_as_float32"
        case bfloat16ToFloat16 = "bfloat16_to_float16", float16ToBfloat16 = "float16_to_bfloat16"
    }

    public static func load() throws -> DTypeFixture {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/dtype-conversions.json")
        return try JSONDecoder().decode(DTypeFixture.self, from: Data(contentsOf: url))
    }
}

/// Conversions on one backend, in and out through raw bytes.
public struct DTypeRunner {
    public let backend: any Backend
    public init(_ backend: any Backend) { self.backend = backend }

    /// Elements given by their bit patterns (`T` the dtype's width) converted from `from` to `to`; the result's bits.
    public func convert<T: FixedWidthInteger, U: FixedWidthInteger>(_ bits: [T], from: DType, to: DType,
                                                                     as _: U.Type = U.self) throws -> [U] {
        precondition(T.bitWidth == from.size * 8 && U.bitWidth == to.size * 8)
        let source = try bits.withUnsafeBytes { try backend.upload(bytes: $0, dtype: from, shape: [bits.count]) }
        let destination = try backend.empty([bits.count], dtype: to)
        try backend.convert(Convert(source: source, destination: destination))
        let bytes = try backend.downloadBytes(destination)
        return bytes.withUnsafeBytes { Array($0.bindMemory(to: U.self)) }
    }

    /// Every 16-bit pattern of a 16-bit float dtype, widened to float32 and narrowed back: the bits that return.
    public func roundTripAll16(_ dtype: DType) throws -> (widened: [UInt32], back: [UInt16]) {
        let all = (0...UInt16.max).map { $0 }
        let widened: [UInt32] = try convert(all, from: dtype, to: .float32)
        return (widened, try convert(widened, from: .float32, to: dtype))
    }
}

extension GEMMCase {
    /// The GEMM cases with typed operands: the awkward shapes with bfloat16 and float16 A and/or B, and larger ones
    /// that reach the packing fast paths, the narrow (n ≤ 16) kernel and several blocks of k.
    public static let typedCases: [GEMMCase] = {
        let pairs: [(DType, DType)] = [(.bfloat16, .float32), (.float32, .bfloat16), (.bfloat16, .bfloat16),
                                       (.float16, .float32), (.float32, .float16), (.float16, .bfloat16)]
        var cases: [GEMMCase] = []
        for (index, base) in awkward.enumerated() {
            var c = base
            (c.typeA, c.typeB) = pairs[index % pairs.count]
            cases.append(c)
        }
        for (typeA, typeB) in pairs {
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                var big = GEMMCase(m: 70, n: 75, k: 600, transposeA: ta, transposeB: tb, beta: 0.5, pad: 1, bias: true)
                var narrow = GEMMCase(m: 300, n: 8, k: 200, transposeA: ta, transposeB: tb, alpha: 0.5)
                var batched = GEMMCase(m: 33, n: 40, k: 17, batch: 3, transposeA: ta, transposeB: tb, beta: 1, pad: 2, offset: 3)
                var tall = GEMMCase(m: 20, n: 300, k: 40, transposeA: ta, transposeB: tb)
                (big.typeA, big.typeB, narrow.typeA, narrow.typeB) = (typeA, typeB, typeA, typeB)
                (batched.typeA, batched.typeB, tall.typeA, tall.typeB) = (typeA, typeB, typeA, typeB)
                cases += [big, narrow, batched, tall]
            }
        }
        return cases
    }()
}

/// The conversion checks both device suites run; each returns a description of every mismatch (empty: all good).
public enum DTypeChecks {
    /// Every conversion of the fixture's values against PyTorch's bits.
    public static func matchesPyTorch(_ run: DTypeRunner) throws -> [String] {
        let f = try DTypeFixture.load()
        var failures: [String] = []
        func compare<T: FixedWidthInteger>(_ name: String, _ got: [T], _ expected: [T]) {
            for i in got.indices where got[i] != expected[i] {
                failures.append("\(name) of 0x\(String(f.float32[i], radix: 16)): got 0x\(String(got[i], radix: 16)), "
                    + "PyTorch 0x\(String(expected[i], radix: 16))")
            }
        }
        compare("float32 → bfloat16", try run.convert(f.float32, from: .float32, to: .bfloat16, as: UInt16.self), f.bfloat16)
        compare("float32 → float16", try run.convert(f.float32, from: .float32, to: .float16, as: UInt16.self), f.float16)
        compare("bfloat16 → float32", try run.convert(f.bfloat16, from: .bfloat16, to: .float32, as: UInt32.self), f.bfloat16AsFloat32)
        compare("float16 → float32", try run.convert(f.float16, from: .float16, to: .float32, as: UInt32.self), f.float16AsFloat32)
        compare("bfloat16 → float16", try run.convert(f.bfloat16, from: .bfloat16, to: .float16, as: UInt16.self), f.bfloat16ToFloat16)
        compare("float16 → bfloat16", try run.convert(f.float16, from: .float16, to: .bfloat16, as: UInt16.self), f.float16ToBfloat16)
        return failures
    }

    /// All 65536 patterns of bf16 and f16 widened (exact) and narrowed back (the same bits); NaNs in float32 narrow to
    /// NaN with their sign and the quiet bit (bf16: the top half of the bits with the quiet bit set).
    public static func roundTrips(_ run: DTypeRunner) throws -> [String] {
        var failures: [String] = []
        for dtype in [DType.bfloat16, .float16] {
            let (widened, back) = try run.roundTripAll16(dtype)
            for pattern in 0...Int(UInt16.max) {
                let bits = UInt16(pattern)
                let exact = dtype == .bfloat16 ? Convert.float(bfloat16: bits) : Convert.float(float16: bits)
                let got = Float(bitPattern: widened[pattern])
                if exact.isNaN {
                    // A NaN widens to a NaN of the same sign and comes back as one.
                    let backValue = dtype == .bfloat16 ? Convert.float(bfloat16: back[pattern]) : Convert.float(float16: back[pattern])
                    if !got.isNaN || got.sign != exact.sign || !backValue.isNaN || backValue.sign != exact.sign {
                        failures.append("\(dtype) NaN 0x\(String(bits, radix: 16)): widened to \(got), back 0x\(String(back[pattern], radix: 16))")
                    }
                } else if got.bitPattern != exact.bitPattern || back[pattern] != bits {
                    failures.append("\(dtype) 0x\(String(bits, radix: 16)): widened to 0x\(String(widened[pattern], radix: 16)) "
                        + "(exact 0x\(String(exact.bitPattern, radix: 16))), back 0x\(String(back[pattern], radix: 16))")
                }
                if failures.count > 20 { return failures }
            }
        }
        let nans: [UInt32] = [0x7FC0_0000, 0xFFC0_0000, 0x7F80_0001, 0x7FFF_FFFF, 0xFFA0_0000]
        let bf16: [UInt16] = try run.convert(nans, from: .float32, to: .bfloat16)
        let f16: [UInt16] = try run.convert(nans, from: .float32, to: .float16)
        for (i, bits) in nans.enumerated() {
            let expected = UInt16(bits >> 16) | 0x0040
            if bf16[i] != expected { failures.append("NaN 0x\(String(bits, radix: 16)) → bf16 0x\(String(bf16[i], radix: 16)), expected 0x\(String(expected, radix: 16))") }
            let half = Convert.float(float16: f16[i])
            if !half.isNaN || half.sign != Float(bitPattern: bits).sign {
                failures.append("NaN 0x\(String(bits, radix: 16)) → f16 0x\(String(f16[i], radix: 16)) is not a NaN of the same sign")
            }
        }
        return failures
    }
}
