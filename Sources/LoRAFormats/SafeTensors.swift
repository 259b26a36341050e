// Reading safetensors: an 8-byte little-endian header length, a JSON header naming each tensor's dtype, shape and
// byte range, then the data, tensors packed back to back (little-endian, row-major, no alignment promised). The
// file is memory-mapped and the header length, the JSON, every dtype, shape and range are checked against the file
// before any tensor is read; ranges must not overlap. Tensors are read lazily: `withBytes` hands out the mapped
// bytes as stored, `floats` and `integers` convert. Writing is in SafeTensorsWriter.swift.
import Foundation

/// Element types of safetensors files.
public enum SafeTensorsDType: String, Sendable, CaseIterable {
    case f64 = "F64", f32 = "F32", f16 = "F16", bf16 = "BF16"
    case i64 = "I64", i32 = "I32", i16 = "I16", i8 = "I8", u8 = "U8", bool = "BOOL"

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .f64, .i64: 8
        case .f32, .i32: 4
        case .f16, .bf16, .i16: 2
        case .i8, .u8, .bool: 1
        }
    }

    public var isFloatingPoint: Bool { [.f64, .f32, .f16, .bf16].contains(self) }
}

/// A safetensors file, memory-mapped and validated.
public final class SafeTensorsFile: @unchecked Sendable {
    /// One tensor's place in the file.
    public struct Entry: Sendable, Equatable {
        public let dtype: SafeTensorsDType
        public let shape: [Int]
        /// Byte range within the data section.
        public let range: Range<Int>
        public var count: Int { shape.reduce(1, *) }
    }

    /// Largest header accepted (the reference implementation's limit).
    public static let maxHeaderBytes = 100_000_000

    public let path: String
    public let entries: [String: Entry]
    /// The header's `__metadata__` strings.
    public let metadata: [String: String]
    private let map: MappedFile
    private let dataStart: Int

    /// Tensor names in the order their data lies in the file.
    public var names: [String] { entries.keys.sorted { entries[$0]!.range.lowerBound < entries[$1]!.range.lowerBound } }

    public init(path: String) throws {
        self.path = path
        map = try MappedFile(path: path)
        let size = map.count
        guard size >= 8 else { throw FormatError.invalid(path: path, reason: "\(size) bytes is shorter than the 8-byte header length") }
        let headerLength = map.bytes.loadUnaligned(as: UInt64.self).littleEndian
        guard headerLength <= UInt64(Self.maxHeaderBytes) else {
            throw FormatError.invalid(path: path, reason: "header length \(headerLength) exceeds the \(Self.maxHeaderBytes)-byte limit")
        }
        guard Int(headerLength) <= size - 8 else {
            throw FormatError.invalid(path: path, reason: "header length \(headerLength) runs past the end of the \(size)-byte file (truncated?)")
        }
        dataStart = 8 + Int(headerLength)
        let header = Data(bytes: map.bytes + 8, count: Int(headerLength))
        (entries, metadata) = try Self.parseHeader(header, dataSize: size - dataStart, path: path)
    }

    /// Checks every entry of the header against the data section's size and each other.
    static func parseHeader(_ header: Data, dataSize: Int, path: String) throws -> ([String: Entry], [String: String]) {
        func invalid(_ reason: String) -> FormatError { .invalid(path: path, reason: reason) }
        guard let root = (try? JSONValue.parse(header))?.objectValue else { throw invalid("the header is not a JSON object") }
        var entries: [String: Entry] = [:]
        var metadata: [String: String] = [:]
        for (name, value) in root {
            if name == "__metadata__" {
                guard let object = value.objectValue else { throw invalid("__metadata__ is not an object") }
                for (key, item) in object {
                    guard let text = item.stringValue else { throw invalid("__metadata__.\(key) is not a string") }
                    metadata[key] = text
                }
                continue
            }
            guard let fields = value.objectValue else { throw invalid("tensor '\(name)' is not an object") }
            guard let dtypeName = fields["dtype"]?.stringValue else { throw invalid("tensor '\(name)' has no dtype string") }
            guard let dtype = SafeTensorsDType(rawValue: dtypeName) else {
                throw FormatError.unsupported(path: path, reason: "tensor '\(name)' has dtype \(dtypeName) (supported: "
                    + SafeTensorsDType.allCases.map(\.rawValue).joined(separator: ", ") + ")")
            }
            guard let dims = fields["shape"]?.arrayValue?.map(\.intValue), dims.allSatisfy({ ($0 ?? -1) >= 0 }) else {
                throw invalid("tensor '\(name)' has no shape of non-negative integers")
            }
            let shape = dims.map { $0! }
            guard let offsets = fields["data_offsets"]?.arrayValue?.map(\.intValue), offsets.count == 2,
                  let begin = offsets[0], let end = offsets[1], 0 <= begin, begin <= end, end <= dataSize else {
                throw invalid("tensor '\(name)' has data_offsets outside the \(dataSize)-byte data section (or not two integers)")
            }
            var bytes = dtype.size
            for d in shape {
                let (product, overflow) = bytes.multipliedReportingOverflow(by: d)
                guard !overflow, product <= dataSize else { throw invalid("tensor '\(name)' of shape \(shape) is larger than the file") }
                bytes = product
            }
            guard bytes == end - begin else {
                throw invalid("tensor '\(name)': \(dtypeName) \(shape) needs \(bytes) bytes but data_offsets span \(end - begin)")
            }
            entries[name] = Entry(dtype: dtype, shape: shape, range: begin..<end)
        }
        let ordered = entries.sorted { ($0.value.range.lowerBound, $0.value.range.upperBound) < ($1.value.range.lowerBound, $1.value.range.upperBound) }
        for (previous, next) in zip(ordered, ordered.dropFirst()) where next.value.range.lowerBound < previous.value.range.upperBound {
            throw invalid("tensors '\(previous.key)' and '\(next.key)' overlap")
        }
        return (entries, metadata)
    }

    /// The entry named `name`, or an error naming the file and the tensor.
    public func entry(_ name: String) throws -> Entry {
        guard let entry = entries[name] else { throw FormatError.invalid(path: path, reason: "no tensor named '\(name)'") }
        return entry
    }

    /// Calls `body` with a tensor's raw data straight from the mapped file, without copying: `entry(name).count`
    /// elements of `entry(name).dtype`, little-endian, row-major, with no alignment guaranteed (safetensors packs
    /// tensors back to back). The buffer is valid only inside `body`.
    public func withBytes<R>(_ name: String, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        let e = try entry(name)
        return try withExtendedLifetime(map) {
            try body(UnsafeRawBufferPointer(start: map.bytes + dataStart + e.range.lowerBound, count: e.range.count))
        }
    }

    /// A tensor's elements as Float (F32 as stored; F16 and BF16 widened exactly; F64 rounded to nearest).
    public func floats(_ name: String) throws -> [Float] {
        let e = try entry(name)
        guard e.dtype.isFloatingPoint else {
            throw FormatError.unsupported(path: path, reason: "tensor '\(name)' is \(e.dtype.rawValue), not floating point")
        }
        return try withBytes(name) { source in
            [Float](unsafeUninitializedCapacity: e.count) { buffer, initialized in
                let destination = UnsafeMutableRawBufferPointer(buffer)
                switch e.dtype {
                case .f16: convertFloat16ToFloat32(source, destination)
                case .bf16: convertBFloat16ToFloat32(source, destination)
                case .f64:
                    for i in 0..<e.count {
                        buffer[i] = Float(Double(bitPattern: UInt64(littleEndian: source.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self))))
                    }
                default:
                    for i in 0..<e.count {
                        buffer[i] = Float(bitPattern: UInt32(littleEndian: source.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)))
                    }
                }
                initialized = e.count
            }
        }
    }

    /// A tensor's elements as Int (integer dtypes only).
    public func integers(_ name: String) throws -> [Int] {
        let e = try entry(name)
        let base = UnsafeRawPointer(map.bytes + dataStart + e.range.lowerBound)
        let n = e.count
        switch e.dtype {
        case .i64: return (0..<n).map { Int(Int64(littleEndian: base.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self))) }
        case .i32: return (0..<n).map { Int(Int32(littleEndian: base.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self))) }
        case .i16: return (0..<n).map { Int(Int16(littleEndian: base.loadUnaligned(fromByteOffset: 2 * $0, as: Int16.self))) }
        case .i8: return (0..<n).map { Int(base.load(fromByteOffset: $0, as: Int8.self)) }
        case .u8, .bool: return (0..<n).map { Int(base.load(fromByteOffset: $0, as: UInt8.self)) }
        default: throw FormatError.unsupported(path: path, reason: "tensor '\(name)' is \(e.dtype.rawValue), not an integer type")
        }
    }
}

/// A file mapped read-only into memory, unmapped when released.
final class MappedFile: @unchecked Sendable {
    let bytes: UnsafeMutableRawPointer
    let count: Int

    init(path: String) throws {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw FormatError.io(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw FormatError.io(path: path, reason: String(cString: strerror(errno))) }
        guard (info.st_mode & S_IFMT) == S_IFREG else { throw FormatError.io(path: path, reason: "not a regular file") }
        count = Int(info.st_size)
        guard count > 0 else {
            bytes = UnsafeMutableRawPointer.allocate(byteCount: 1, alignment: 8)  // nothing to map; never read
            return
        }
        let address = mmap(nil, count, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let address, address != MAP_FAILED else { throw FormatError.io(path: path, reason: "mmap: " + String(cString: strerror(errno))) }
        bytes = address
    }

    deinit {
        if count > 0 { munmap(bytes, count) } else { bytes.deallocate() }
    }
}

