// bf16/f16 conversions against what PyTorch computes (Tests/Fixtures/half_precision.txt, written by
// make_half_precision.py: ties, subnormals, overflow, max values, infinities, NaN, random values), against Swift's
// own Float16 on many random floats, and the bulk converters against the scalar ones on unaligned buffers.
import Foundation
import LoRAFormats
import LoRARuntime
import LoRATestSupport
import Testing

@Suite("half precision")
struct HalfPrecisionTests {
    static let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/half_precision.txt").path

    /// The fixture's lines of one kind, as hex fields.
    static func rows(_ kind: String) throws -> [[UInt32]] {
        try String(contentsOfFile: fixture, encoding: .utf8).split(separator: "\n")
            .filter { $0.hasPrefix(kind + " ") }
            .map { $0.split(separator: " ").dropFirst().map { UInt32($0, radix: 16)! } }
    }

    @Test("float32 → bf16 and f16 round exactly as PyTorch, NaN stays NaN")
    func narrowing() throws {
        let rows = try Self.rows("n")
        #expect(rows.count > 200)
        for row in rows {
            let x = Float(bitPattern: row[0])
            let (bf16, f16) = (UInt16(row[1]), UInt16(row[2]))
            if x.isNaN {
                #expect(Float(bfloat16Bits: x.bfloat16Bits).isNaN && Float(float16Bits: x.float16Bits).isNaN)
                #expect(x.bfloat16Bits == 0x7FC0, "the documented bf16 NaN")
                #expect(x.float16Bits == f16, "f16 NaN keeps sign and payload as PyTorch (F16C) does: \(String(row[0], radix: 16))")
            } else {
                #expect(x.bfloat16Bits == bf16, "bf16(\(String(row[0], radix: 16)))")
                #expect(x.float16Bits == f16, "f16(\(String(row[0], radix: 16)))")
            }
        }
    }

    @Test("bf16 and f16 → float32 are exact as PyTorch")
    func widening() throws {
        for (kind, widen) in [("b", { Float(bfloat16Bits: $0) }), ("h", { Float(float16Bits: $0) })] as [(String, (UInt16) -> Float)] {
            let rows = try Self.rows(kind)
            #expect(rows.count > 50)
            for row in rows {
                let expected = Float(bitPattern: row[1])
                let got = widen(UInt16(row[0]))
                #expect(expected.isNaN ? got.isNaN : got.bitPattern == row[1], "\(kind) \(String(row[0], radix: 16))")
            }
        }
    }

    @Test("f16 matches Swift's Float16 on random floats of every exponent, and every half widens and narrows back")
    func float16Oracle() {
        var generator = SeededGenerator(seed: 5)
        var wrong: [String] = []  // gathered, so 300k comparisons cost one expectation
        for _ in 0..<200_000 {
            let x = Float(bitPattern: UInt32.random(in: 0...UInt32.max, using: &generator))
            if !x.isNaN, x.float16Bits != Float16(x).bitPattern { wrong.append("f16(\(x))") }
        }
        for bits in 0...UInt16.max {
            let f = Float(float16Bits: bits)
            if Float16(bitPattern: bits).isNaN {
                if !f.isNaN { wrong.append("NaN \(bits)") }
                continue
            }
            if f.bitPattern != Float(Float16(bitPattern: bits)).bitPattern || f.float16Bits != bits { wrong.append("half \(bits)") }
            let b = Float(bfloat16Bits: bits)
            if !b.isNaN, b.bfloat16Bits != bits { wrong.append("bf16 \(bits)") }
        }
        #expect(wrong.isEmpty, "\(wrong.prefix(10))")
    }

    @Test("bulk conversions equal the scalar ones, on unaligned buffers, little-endian")
    func bulk() {
        var generator = SeededGenerator(seed: 11)
        let n = 1003
        var values = (0..<n).map { _ in Float(bitPattern: UInt32.random(in: 0...UInt32.max, using: &generator)) }
        values[0] = Float.infinity; values[1] = -Float.greatestFiniteMagnitude; values[2] = Float(bitPattern: 0x2CA); values[3] = Float.nan
        // One byte of offset makes every buffer misaligned for its element type.
        var wide = [UInt8](repeating: 0, count: 4 * n + 1)
        wide.withUnsafeMutableBytes { raw in
            for (i, v) in values.enumerated() { raw.storeBytes(of: v.bitPattern.littleEndian, toByteOffset: 1 + 4 * i, as: UInt32.self) }
        }
        var narrow = [UInt8](repeating: 0, count: 2 * n + 1)
        var back = [UInt8](repeating: 0, count: 4 * n + 1)
        let cases: [((UnsafeRawBufferPointer, UnsafeMutableRawBufferPointer) -> Void,
                     (UnsafeRawBufferPointer, UnsafeMutableRawBufferPointer) -> Void, (Float) -> UInt16, (UInt16) -> Float)] = [
            (convertFloat32ToBFloat16, convertBFloat16ToFloat32, { $0.bfloat16Bits }, { Float(bfloat16Bits: $0) }),
            (convertFloat32ToFloat16, convertFloat16ToFloat32, { $0.float16Bits }, { Float(float16Bits: $0) }),
        ]
        for (toHalf, toFloat, scalar, widen) in cases {
            wide.withUnsafeBytes { w in narrow.withUnsafeMutableBytes { h in
                toHalf(UnsafeRawBufferPointer(rebasing: w[1...]), UnsafeMutableRawBufferPointer(rebasing: h[1...]))
            } }
            narrow.withUnsafeBytes { h in back.withUnsafeMutableBytes { w in
                toFloat(UnsafeRawBufferPointer(rebasing: h[1...]), UnsafeMutableRawBufferPointer(rebasing: w[1...]))
            } }
            for i in 0..<n {
                let half = UInt16(narrow[1 + 2 * i]) | UInt16(narrow[2 + 2 * i]) << 8
                #expect(half == scalar(values[i]))
                let widened = (0..<4).reduce(UInt32(0)) { $0 | UInt32(back[1 + 4 * i + $1]) << (8 * $1) }
                #expect(widened == widen(half).bitPattern)
            }
        }
    }
}
