// safetensors: round trips, every dtype, and hostile files (thousands of mutated and truncated copies of a
// valid file): each gives a clear FormatError or a load whose entries are consistent, none crashes.
import Foundation
@testable import LoRAFormats
import LoRARuntime
import LoRATestSupport
import Testing

@Suite("safetensors")
struct SafeTensorsTests {
    let directory: URL = {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("lora-st-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }()

    /// A small valid file's bytes: F32, F16, BF16, I64 and an empty tensor, with metadata.
    static func sample() throws -> Data {
        let f16 = [Float16(1.5), -2, 0.25, 65504].flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian, Array.init) }
        let bf16 = [Float(3.0), -0.5, 1e30].flatMap { withUnsafeBytes(of: UInt16($0.bitPattern >> 16).littleEndian, Array.init) }
        return try SafeTensorsWriter.encode([
            .float32("w", shape: [2, 3], values: [1, 2, 3, 4, 5, -6]),
            SafeTensorsWriter.Item(name: "h", dtype: .f16, shape: [4], bytes: Data(f16)),
            SafeTensorsWriter.Item(name: "b", dtype: .bf16, shape: [3], bytes: Data(bf16)),
            .int64("ids", shape: [2, 2], values: [0, 50256, -100, 7]),
            .float32("empty", shape: [0, 4], values: []),
        ], metadata: ["format": "pt"])
    }

    func write(_ data: Data, _ name: String = "t.safetensors") throws -> String {
        let path = directory.appendingPathComponent(name).path
        try data.write(to: URL(fileURLWithPath: path))
        return path
    }

    @Test("a written file reads back: every dtype converted, metadata kept, 8-byte aligned header")
    func roundTrip() throws {
        let data = try Self.sample()
        let headerLength = data.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        #expect(headerLength % 8 == 0)
        let file = try SafeTensorsFile(path: write(data))
        #expect(try file.floats("w") == [1, 2, 3, 4, 5, -6])
        #expect(try file.floats("h") == [1.5, -2, 0.25, 65504])
        #expect(try file.floats("b") == [3, -0.5, Float(bitPattern: Float(1e30).bitPattern & 0xFFFF_0000)])
        #expect(try file.integers("ids") == [0, 50256, -100, 7])
        #expect(try file.floats("empty").isEmpty)
        #expect(file.metadata == ["format": "pt"])
        #expect(file.names == ["w", "h", "b", "ids", "empty"])
        #expect(throws: FormatError.self) { try file.integers("w") }
        #expect(throws: FormatError.self) { try file.floats("ids") }
        #expect(throws: FormatError.self) { try file.floats("missing") }
    }

    @Test("hostile headers are rejected with the reason", arguments: [
        ("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 4]}}", "needs 8 bytes"),
        ("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}, \"b\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [2, 6]}}", "overlap"),
        ("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [14, 18]}}", "outside"),
        ("{\"a\": {\"dtype\": \"C64\", \"shape\": [1], \"data_offsets\": [0, 8]}}", "dtype C64"),
        ("{\"a\": {\"dtype\": \"F32\", \"shape\": [-1], \"data_offsets\": [0, 4]}}", "shape"),
        ("{\"a\": {\"dtype\": \"F32\", \"shape\": [4611686018427387904, 4], \"data_offsets\": [0, 4]}}", "larger than the file"),
        ("{\"a\": {\"dtype\": \"F32\", \"shape\": [1.5], \"data_offsets\": [0, 4]}}", "shape"),
        ("[1, 2]", "not a JSON object"),
        ("{\"a\": ", "not a JSON object"),
        ("{\"__metadata__\": {\"k\": 3}}", "not a string"),
    ])
    func hostileHeaders(header: String, reason: String) throws {
        var json = Array(header.utf8)
        var data = Data()
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { data.append(contentsOf: $0) }
        data.append(contentsOf: json)
        data.append(Data(count: 16))
        json.removeAll()
        let error = #expect(throws: FormatError.self) { try SafeTensorsFile(path: write(data)) }
        #expect(error?.description.contains(reason) == true, "\(String(describing: error))")
    }

    @Test("absurd header lengths, short and empty files, a folder: clear errors")
    func hostileSizes() throws {
        for length: UInt64 in [UInt64.max, 1 << 40, 200_000_000, 1000] {
            var data = Data()
            withUnsafeBytes(of: length.littleEndian) { data.append(contentsOf: $0) }
            data.append(Data(repeating: 0x20, count: 16))
            let error = #expect(throws: FormatError.self) { try SafeTensorsFile(path: write(data)) }
            #expect(error?.description.contains("header length") == true)
        }
        #expect(throws: FormatError.self) { try SafeTensorsFile(path: write(Data([1, 2, 3]))) }
        #expect(throws: FormatError.self) { try SafeTensorsFile(path: write(Data())) }
        #expect(throws: FormatError.self) { try SafeTensorsFile(path: directory.path) }
        #expect(throws: FormatError.self) { try SafeTensorsFile(path: directory.appendingPathComponent("none").path) }
    }

    @Test("thousands of mutated and truncated files: a FormatError or a consistent load, never a crash")
    func fuzz() throws {
        let original = try Self.sample()
        var generator = SeededGenerator(seed: 99)
        var (loaded, rejected) = (0, 0)
        for round in 0..<3000 {
            var bytes = [UInt8](original)
            switch round % 4 {
            case 0:  // truncate anywhere
                bytes.removeLast(Int.random(in: 1...bytes.count, using: &generator))
            case 1:  // flip bytes, mostly in the header
                for _ in 0..<Int.random(in: 1...4, using: &generator) {
                    let at = Int.random(in: 0..<min(bytes.count, 8 + 400), using: &generator)
                    bytes[at] = UInt8.random(in: 0...255, using: &generator)
                }
            case 2:  // replace a digit of the header with another digit (shapes and offsets shift)
                let digits = bytes.indices.filter { $0 >= 8 && $0 < 400 && (48...57).contains(bytes[$0]) }
                if let at = digits.randomElement(using: &generator) { bytes[at] = UInt8.random(in: 48...57, using: &generator) }
            default:  // a random header length
                let length = UInt64.random(in: 0...UInt64(bytes.count + 16), using: &generator)
                withUnsafeBytes(of: length.littleEndian) { for i in 0..<8 { bytes[i] = $0[i] } }
            }
            let path = try write(Data(bytes), "fuzz.safetensors")
            do {
                let file = try SafeTensorsFile(path: path)
                for name in file.entries.keys {
                    let e = file.entries[name]!
                    if e.dtype.isFloatingPoint { #expect(try file.floats(name).count == e.count) }
                    else { #expect(try file.integers(name).count == e.count) }
                }
                loaded += 1
            } catch is FormatError {
                rejected += 1
            }
        }
        #expect(loaded + rejected == 3000)
        #expect(rejected > 1000 && loaded > 10, "loaded \(loaded), rejected \(rejected)")
    }

    @Test("withBytes hands out the stored bytes of every dtype, unconverted and in place")
    func rawBytes() throws {
        var generator = SeededGenerator(seed: 3)
        var items: [SafeTensorsWriter.Item] = []
        var expected: [String: [UInt8]] = [:]
        for dtype in SafeTensorsDType.allCases {
            let shape = [3, 5]
            let bytes = (0..<(15 * dtype.size)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            expected[dtype.rawValue] = bytes
            items.append(SafeTensorsWriter.Item(name: dtype.rawValue, dtype: dtype, shape: shape, bytes: Data(bytes)))
        }
        let file = try SafeTensorsFile(path: write(try SafeTensorsWriter.encode(items)))
        for dtype in SafeTensorsDType.allCases {
            #expect(try file.withBytes(dtype.rawValue) { [UInt8]($0) } == expected[dtype.rawValue], "\(dtype)")
            #expect(try file.entry(dtype.rawValue).dtype == dtype)
        }
        // The BF16 bytes, odd-offset in the file after 15 one-byte elements, widen as the scalar conversion says.
        let bf16 = expected["BF16"]!
        let widened = (0..<15).map { Float(bfloat16Bits: UInt16(bf16[2 * $0]) | UInt16(bf16[2 * $0 + 1]) << 8) }
        #expect(try file.floats("BF16").map(\.bitPattern) == widened.map(\.bitPattern))
        #expect(throws: FormatError.self) { try file.withBytes("missing") { $0.count } }
    }

    @Test("F32, BF16 and F16 items from floats round trip (rounded as PyTorch), and from raw bytes as given")
    func floatItems() throws {
        var generator = SeededGenerator(seed: 8)
        // More than one 64 Ki conversion chunk, with values that need rounding, subnormals and overflow.
        var values = (0..<70_000).map { _ in Float.random(in: -3...3, using: &generator) * 1000 }
        values[0] = 70_000; values[1] = 1e-6; values[2] = -.infinity; values[3] = Float(bitPattern: 0x116C2)
        let path = directory.appendingPathComponent("floats.safetensors").path
        let f16Raw = values.flatMap { withUnsafeBytes(of: $0.float16Bits.littleEndian, Array.init) }
        try SafeTensorsWriter.write([
            .floats("f32", dtype: .f32, shape: [values.count], values: values),
            .floats("bf16", dtype: .bf16, shape: [values.count], values: values),
            .floats("f16", dtype: .f16, shape: [values.count], values: values),
            SafeTensorsWriter.Item(name: "f16raw", dtype: .f16, shape: [values.count], bytes: Data(f16Raw)),
        ], to: path)
        let file = try SafeTensorsFile(path: path)
        #expect(try file.floats("f32") == values)
        #expect(try file.floats("bf16") == values.map { Float(bfloat16Bits: $0.bfloat16Bits) })
        let f16 = try file.floats("f16")
        #expect(f16 == values.map { Float(Float16($0)) })
        #expect(f16[0] == .infinity && f16[3] == 0)
        #expect(try file.withBytes("f16raw") { [UInt8]($0) } == f16Raw)
        #expect(try file.withBytes("f16") { [UInt8]($0) } == f16Raw)
    }

    @Test("a producer that emits the wrong number of bytes fails the write and leaves the old file")
    func producerMismatch() throws {
        let path = directory.appendingPathComponent("p.safetensors").path
        try SafeTensorsWriter.write([.float32("x", shape: [1], values: [1])], to: path)
        for count in [7, 9, 0] {
            let item = SafeTensorsWriter.Item(name: "y", dtype: .f32, shape: [2]) { emit in
                // Emitted in uneven pieces, as a device read a slice at a time would.
                let bytes = [UInt8](repeating: 1, count: count)
                try bytes.withUnsafeBytes { try emit(UnsafeRawBufferPointer(rebasing: $0[..<min(3, count)])) }
                try bytes.withUnsafeBytes { try emit(UnsafeRawBufferPointer(rebasing: $0[min(3, count)...])) }
            }
            let error = #expect(throws: LoRAFormatsError.self) { try SafeTensorsWriter.write([item], to: path) }
            #expect(error?.description.contains("'y'") == true)
        }
        let pieces = SafeTensorsWriter.Item(name: "y", dtype: .f32, shape: [2]) { emit in
            for value: Float in [5, 6] { try withUnsafeBytes(of: value.bitPattern.littleEndian) { try emit($0) } }
        }
        #expect(try SafeTensorsFile(path: path).floats("x") == [1])
        try SafeTensorsWriter.write([pieces], to: path)
        #expect(try SafeTensorsFile(path: path).floats("y") == [5, 6])
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.contains(".tmp-") }.isEmpty)
        #expect(throws: LoRAFormatsError.self) { try SafeTensorsWriter.encode([.float32("z", shape: [-1], values: [])]) }
    }

    @Test("a write replaces the file atomically and leaves no temporary behind")
    func atomicWrite() throws {
        let path = directory.appendingPathComponent("a.safetensors").path
        try SafeTensorsWriter.write([.float32("x", shape: [1], values: [1])], to: path)
        try SafeTensorsWriter.write([.float32("x", shape: [2], values: [2, 3])], to: path)
        #expect(try SafeTensorsFile(path: path).floats("x") == [2, 3])
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.contains(".tmp-") }.isEmpty)
        #expect(throws: FormatError.self) { try SafeTensorsWriter.write([], to: "/nonexistent/dir/x.safetensors") }
        #expect(throws: LoRAFormatsError.self) { try SafeTensorsWriter.encode([.float32("x", shape: [3], values: [1])]) }
    }
}
