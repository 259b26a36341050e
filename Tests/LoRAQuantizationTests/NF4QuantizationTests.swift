// NF4 quantization against bitsandbytes 0.50 (Tests/Fixtures/nf4/, written by make_qlora_fixtures.py): every case's
// packed bytes, absmax, nested statistics, quant_state bytes and dequantized weights bit for bit; the >32768-block
// case whose nested offset depends on torch's thread count; the code books; argument errors.
import Foundation
import LoRAFormats
@testable import LoRAQuantization
import LoRARuntime
import Testing

enum NF4Fixtures {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures").path
    static func path(_ relative: String) -> String { folder + "/" + relative }

    struct Case {
        let name: String; let rows: Int; let columns: Int; let blocksize: Int; let doubleQuant: Bool
        /// Whether bitsandbytes' bfloat16 and float16 dequantizations are stored too.
        let dtypes: Bool
    }

    static let index: [String: JSONValue] = try! JSONValue.readObject(path: path("nf4/cases.json"))
    static let cases: [Case] = index["cases"]!.arrayValue!.map { c in
        let o = c.objectValue!
        return Case(name: o["name"]!.stringValue!, rows: o["rows"]!.intValue!, columns: o["columns"]!.intValue!,
                    blocksize: o["blocksize"]!.intValue!, doubleQuant: o["double_quant"]!.boolValue!,
                    dtypes: o["dtypes"]?.boolValue ?? false)
    }
    static let file: SafeTensorsFile = try! SafeTensorsFile(path: path("nf4/cases.safetensors"))

    static func bytes(_ file: SafeTensorsFile, _ name: String) throws -> [UInt8] { try file.withBytes(name) { Array($0) } }
    static func bits(_ values: [Float]) -> [UInt32] { values.map(\.bitPattern) }

    /// FNV-1a 64 (what the fixture records for tensors too large to commit).
    static func fnv1a64(_ bytes: some Sequence<UInt8>) -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in bytes { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        let hex = String(h, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }

    /// make_qlora_fixtures.big_case_input.
    static func bigInput(count: Int) -> [Float] {
        (0..<count).map { i in
            let h = (UInt32(truncatingIfNeeded: i) &* 2_654_435_761 &+ 12345) >> 8
            return (Float(h) / 8_388_608 - 1) * (1 + Float((i >> 12) % 7))
        }
    }
}

@Suite("NF4 quantization (bitsandbytes)")
struct NF4QuantizationTests {
    @Test("the fixture has the edge cases it claims")
    func fixtureCoverage() {
        let cases = NF4Fixtures.cases
        #expect(cases.count >= 20)
        #expect(Set(cases.map(\.blocksize)).isSuperset(of: [32, 64, 128, 4096]))
        #expect(cases.contains { $0.doubleQuant } && cases.contains { !$0.doubleQuant })
        #expect(cases.contains { ($0.rows * $0.columns) % 2 == 1 }, "an odd element count")
        #expect(cases.contains { ($0.rows * $0.columns) % $0.blocksize != 0 }, "a partial last block")
        #expect(cases.contains { $0.doubleQuant && ($0.rows * $0.columns + $0.blocksize - 1) / $0.blocksize > 512 }, "> 2 nested blocks")
        #expect(cases.filter(\.dtypes).count >= 8 && cases.contains { $0.dtypes && $0.name == "extremes" }, "bf16/f16 references")
    }

    @Test("quantize == bitsandbytes' quantize_4bit for every case, byte for byte", arguments: NF4Fixtures.cases.map(\.name))
    func quantizeMatches(name: String) throws {
        let c = NF4Fixtures.cases.first { $0.name == name }!
        let file = NF4Fixtures.file
        let input = try file.floats(name + ".input")
        let mine = try NF4HostWeight.quantize(input, rows: c.rows, columns: c.columns, blocksize: c.blocksize,
                                              doubleQuantization: c.doubleQuant, name: name)
        let theirs = try file.readNF4(module: name)
        #expect(mine.codes == theirs.codes, "packed codes")
        #expect(mine.isDoubleQuantized == c.doubleQuant)
        switch (mine.absmax, theirs.absmax) {
        case (.float32(let a), .float32(let b)):
            #expect(NF4Fixtures.bits(a) == NF4Fixtures.bits(b), "absmax")
        case (.doubleQuantized(let c1, let m1, let s1, let o1, let b1), .doubleQuantized(let c2, let m2, let s2, let o2, let b2)):
            #expect(o1.bitPattern == o2.bitPattern, "nested offset \(o1) vs \(o2)")
            #expect(c1 == c2, "absmax codes")
            #expect(NF4Fixtures.bits(s1) == NF4Fixtures.bits(s2), "nested absmax")
            #expect(NF4Fixtures.bits(m1) == NF4Fixtures.bits(m2) && b1 == b2, "nested map and blocksize")
        default:
            Issue.record("absmax kinds differ: \(mine.absmax) vs \(theirs.absmax)")
        }
        #expect(mine == theirs)
        // The float32 absmax before double quantization (the 4-bit half alone).
        let (_, blockAbsmax) = try input.withUnsafeBufferPointer { try NF4HostWeight.quantize4Bit($0, blocksize: c.blocksize, name: name) }
        #expect(NF4Fixtures.bits(blockAbsmax) == NF4Fixtures.bits(try file.floats(name + ".absmax_float32")))
        // The quant_state bytes bitsandbytes wrote (Python's json.dumps, float repr of the offset).
        let stateName = name + ".weight.quant_state.bitsandbytes__nf4"
        let written = try NF4Fixtures.bytes(file, stateName)
        #expect(Array(mine.quantState.jsonText.utf8) == written,
                "\(mine.quantState.jsonText) vs \(String(decoding: written, as: UTF8.self))")
    }

    @Test("host dequantize == bitsandbytes' flat-block dequantize_4bit, bit for bit", arguments: NF4Fixtures.cases.map(\.name))
    func dequantizeMatches(name: String) throws {
        let weight = try NF4Fixtures.file.readNF4(module: name)
        let expected = try NF4Fixtures.file.floats(name + ".dequantized")
        #expect(NF4Fixtures.bits(weight.dequantize()) == NF4Fixtures.bits(expected))
    }

    @Test("host dequantize of a bfloat16/float16 weight == bitsandbytes' dequantize_4bit to that dtype, bit for bit",
          arguments: NF4Fixtures.cases.filter(\.dtypes).map(\.name))
    func dequantizeToDType(name: String) throws {
        let stored = try NF4Fixtures.file.readNF4(module: name)
        for dtype in [DType.bfloat16, .float16] {
            let weight = try NF4HostWeight(rows: stored.rows, columns: stored.columns, blocksize: stored.blocksize,
                                           codes: stored.codes, map: stored.map, absmax: stored.absmax, dtype: dtype)
            let expected = try NF4Fixtures.file.floats("\(name).dequantized_\(dtype.rawValue)")
            #expect(NF4Fixtures.bits(weight.dequantize()) == NF4Fixtures.bits(expected), "\(dtype)")
        }
    }

    @Test("edge cases: zero blocks, the 1e-38 clamp of a short block, midpoint ties take the lower code")
    func edgeCases() throws {
        let file = NF4Fixtures.file
        // A full block of zeros stores absmax 0; a short one stores float32(1e-38), as torch clamps it first.
        let zeroBlock = try file.readNF4(module: "zero_block")
        guard case .float32(let a) = zeroBlock.absmax else { Issue.record("zero_block not float32"); return }
        #expect(a[1] == 0)
        let zeroTail = try file.readNF4(module: "zero_tail")
        guard case .float32(let t) = zeroTail.absmax else { Issue.record("zero_tail not float32"); return }
        #expect(t.last == Float(1e-38) && t.last!.isSubnormal)
        #expect(zeroTail.codes.suffix(11).allSatisfy { $0 == 0x77 }, "zeros take NF4's code 7")
        // Exact midpoints: block 0 (absmax 2) holds 2 then each midpoint·2 and its two float32 neighbours.
        let mid = try file.readNF4(module: "midpoints")
        let codes: [UInt8] = (0..<64).map { (e: Int) -> UInt8 in
            let byte = mid.codes[e / 2]
            return e % 2 == 0 ? byte >> 4 : byte & 0xF
        }
        #expect(codes[0] == 15)
        for k in 0..<15 {
            let (tie, above, below) = (codes[1 + 3 * k], codes[2 + 3 * k], codes[3 + 3 * k])
            #expect(tie == UInt8(k) && above == UInt8(k + 1) && below == UInt8(k), "midpoint \(k): \(tie) \(above) \(below)")
        }
    }

    @Test("the code books are the ones bitsandbytes writes")
    func codebooks() throws {
        let file = NF4Fixtures.file
        #expect(NF4Fixtures.bits(BitsAndBytesCodebook.nf4) == NF4Fixtures.bits(try file.floats("span_odd_bs64_dq.weight.quant_map")))
        #expect(NF4Fixtures.bits(BitsAndBytesCodebook.dynamic8Bit) == NF4Fixtures.bits(try file.floats("span_odd_bs64_dq.weight.nested_quant_map")))
        #expect(BitsAndBytesCodebook.nf4.first == -1 && BitsAndBytesCodebook.nf4[7] == 0 && BitsAndBytesCodebook.nf4.last == 1)
        #expect(zip(BitsAndBytesCodebook.dynamic8Bit, BitsAndBytesCodebook.dynamic8Bit.dropFirst()).allSatisfy { $0 <= $1 })
    }

    @Test("> 32768 blocks: the nested offset is torch's mean for each thread count; all else bit-exact")
    func bigCase() throws {
        let big = NF4Fixtures.index["big"]!.objectValue!
        let (rows, columns, blocksize) = (big["rows"]!.intValue!, big["columns"]!.intValue!, big["blocksize"]!.intValue!)
        let input = NF4Fixtures.bigInput(count: rows * columns)
        let offsets = big["offsets_by_threads"]!.objectValue!
        #expect(offsets.count >= 2)
        let (_, absmax) = try input.withUnsafeBufferPointer { try NF4HostWeight.quantize4Bit($0, blocksize: blocksize, name: "big") }
        #expect(absmax.count > 32768)
        var distinct = Set<UInt32>()
        for (threads, value) in offsets {
            let expected = Float(value.doubleValue!)
            distinct.insert(expected.bitPattern)
            let mean = absmax.withUnsafeBufferPointer { torchFloat32Mean($0, threads: Int(threads)!) }
            #expect(mean.bitPattern == expected.bitPattern, "\(threads) threads: \(mean) vs \(expected)")
        }
        #expect(distinct.count > 1, "the fixture should show the thread count mattering")

        let threads = big["torch_threads"]!.intValue!
        let mine = try NF4HostWeight.quantize(input, rows: rows, columns: columns, blocksize: blocksize,
                                              doubleQuantization: true, meanThreads: threads)
        let file = NF4Fixtures.file
        guard case .doubleQuantized(let codes, _, let scales, _, _) = mine.absmax else { Issue.record("not double"); return }
        #expect(codes == (try NF4Fixtures.bytes(file, "big.weight.absmax")))
        #expect(NF4Fixtures.bits(scales) == NF4Fixtures.bits(try file.floats("big.weight.nested_absmax")))
        #expect(Array(mine.quantState.jsonText.utf8) == (try NF4Fixtures.bytes(file, "big.weight.quant_state.bitsandbytes__nf4")))
        #expect(NF4Fixtures.fnv1a64(mine.codes) == big["weight_fnv1a64"]!.stringValue!)
        let dequantized = mine.dequantize()
        let bytes = dequantized.withUnsafeBytes { Array($0) }
        #expect(NF4Fixtures.fnv1a64(bytes) == big["dequantized_fnv1a64"]!.stringValue!)
    }

    @Test("torch's float32 sum adds in its order, not left to right")
    func torchSum() {
        func sum(_ x: [Float]) -> Float { x.withUnsafeBufferPointer { torchFloat32Sum($0) } }
        #expect(sum([1, 2, 3]) == 6)
        // Below 8 elements: 4 interleaved accumulators [2^24, 1, -2^24, 0], x4 = 1 added to the first (2^24 + 1
        // rounds to 2^24), then the accumulators in order: 0. Left to right would give 1.
        let big: Float = 16_777_216
        #expect(sum([big, 1, -big, 0, 1]) == 0)
        // 9 elements: one vector of 8 lanes; the ninth is added to 0 first, then the lanes: 1 + 2^24 rounds to 2^24,
        // minus 2^24 gives 0. Left to right would give 1.
        #expect(sum([big, -big, 0, 0, 0, 0, 0, 0, 1]) == 0)
    }

    @Test("Python float repr of the offset")
    func floatRepr() {
        let cases: [(Double, String)] = [(0.5435470938682556, "0.5435470938682556"), (0, "0.0"), (1e-05, "1e-05"),
                                         (0.0001, "0.0001"), (1e16, "1e+16"), (9999999999999998.0, "9999999999999998.0"),
                                         (123.0, "123.0"), (1.5e-39, "1.5e-39"), (3.9211905002593994, "3.9211905002593994"),
                                         (-2.5, "-2.5"), (1e22, "1e+22"), (123456789012345.6, "123456789012345.6")]
        for (value, text) in cases { #expect(pythonFloatRepr(value) == text, "\(value)") }
    }

    @Test("bad arguments: blocksizes bitsandbytes refuses, non-finite values")
    func badArguments() {
        let values = [Float](repeating: 0.5, count: 128)
        for blocksize in [16, 48, 100, 8192] {
            #expect(throws: LoRAError.self) { try NF4HostWeight.quantize(values, rows: 2, columns: 64, blocksize: blocksize) }
        }
        var bad = values
        bad[70] = .nan
        do {
            _ = try NF4HostWeight.quantize(bad, rows: 2, columns: 64, name: "layer.weight")
            Issue.record("NaN accepted")
        } catch {
            #expect("\(error)".contains("layer.weight") && "\(error)".contains("element 70"), "\(error)")
        }
        bad[70] = -.infinity
        #expect(throws: LoRAError.self) { try NF4HostWeight.quantize(bad, rows: 2, columns: 64) }
    }

    @Test("upload to the CPU backend: NF4Weight holds the same bytes; download restores the host weight",
          arguments: ["span_odd_bs64_dq", "span_odd_bs64", "many_blocks_bs32_dq"])
    func upload(name: String) throws {
        let host = try NF4Fixtures.file.readNF4(module: name)
        let backend = CPUBackend.shared
        let device = try host.upload(to: backend)
        #expect(device.rows == host.rows && device.columns == host.columns && device.blocksize == host.blocksize)
        #expect(try backend.downloadBytes(device.codes) == host.codes)
        #expect(NF4Fixtures.bits(try backend.download(device.map)) == NF4Fixtures.bits(host.map))
        switch (device.absmax, host.absmax) {
        case (.float32(let d), .float32(let h)):
            #expect(NF4Fixtures.bits(try backend.download(d)) == NF4Fixtures.bits(h))
        case (.doubleQuantized(let dc, let dm, let ds, let doff, let db), .doubleQuantized(let hc, let hm, let hs, let hoff, let hb)):
            #expect(try backend.downloadBytes(dc) == hc)
            #expect(NF4Fixtures.bits(try backend.download(dm)) == NF4Fixtures.bits(hm))
            #expect(NF4Fixtures.bits(try backend.download(ds)) == NF4Fixtures.bits(hs))
            #expect(doff.bitPattern == hoff.bitPattern && db == hb)
        default: Issue.record("absmax kinds differ")
        }
        #expect(device.byteCount == host.byteCount)
        #expect(try NF4HostWeight(downloading: device) == host)
    }
}
