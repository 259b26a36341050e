// safetensors: an 8-byte little-endian header length, a JSON header naming each tensor's dtype, shape and byte
// range, then the data. Reading maps the file and checks the header length, the JSON, every dtype, shape and
// range against the file before any tensor is read; ranges must not overlap. Writing goes to a temporary file
// that is renamed into place, so a crash never leaves a half-written file under the real name.
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

    /// A tensor's elements as Float (F32 as stored; F16, BF16 and F64 converted).
    public func floats(_ name: String) throws -> [Float] {
        let e = try entry(name)
        let base = UnsafeRawPointer(map.bytes + dataStart + e.range.lowerBound)
        let n = e.count
        switch e.dtype {
        case .f32: return (0..<n).map { Float(bitPattern: base.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self).littleEndian) }
        case .f16: return (0..<n).map { Float(Float16(bitPattern: base.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self).littleEndian)) }
        case .bf16: return (0..<n).map { Float(bitPattern: UInt32(base.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self).littleEndian) << 16) }
        case .f64: return (0..<n).map { Float(Double(bitPattern: base.loadUnaligned(fromByteOffset: 8 * $0, as: UInt64.self).littleEndian)) }
        default: throw FormatError.unsupported(path: path, reason: "tensor '\(name)' is \(e.dtype.rawValue), not floating point")
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

/// Writes safetensors files.
public enum SafeTensorsWriter {
    /// One tensor to write: its raw little-endian bytes.
    public struct Item {
        public let name: String, dtype: SafeTensorsDType, shape: [Int], bytes: Data
        public init(name: String, dtype: SafeTensorsDType, shape: [Int], bytes: Data) {
            (self.name, self.dtype, self.shape, self.bytes) = (name, dtype, shape, bytes)
        }

        /// An F32 tensor.
        public static func float32(_ name: String, shape: [Int], values: [Float]) -> Item {
            var data = Data(capacity: values.count * 4)
            for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { data.append(contentsOf: $0) } }
            return Item(name: name, dtype: .f32, shape: shape, bytes: data)
        }

        /// An I64 tensor.
        public static func int64(_ name: String, shape: [Int], values: [Int]) -> Item {
            var data = Data(capacity: values.count * 8)
            for v in values { withUnsafeBytes(of: Int64(v).littleEndian) { data.append(contentsOf: $0) } }
            return Item(name: name, dtype: .i64, shape: shape, bytes: data)
        }
    }

    /// The file's bytes: data in the order given, the header padded with spaces to a multiple of 8.
    public static func encode(_ items: [Item], metadata: [String: String] = [:]) throws -> Data {
        var header: [String: JSONValue] = [:]
        var offset = 0
        for item in items {
            guard item.shape.reduce(item.dtype.size, *) == item.bytes.count else {
                throw LoRAFormatsError.shape("safetensors: '\(item.name)' \(item.dtype.rawValue) \(item.shape) needs "
                    + "\(item.shape.reduce(item.dtype.size, *)) bytes, got \(item.bytes.count)")
            }
            guard header[item.name] == nil, item.name != "__metadata__" else {
                throw LoRAFormatsError.shape("safetensors: the name '\(item.name)' is used twice or reserved")
            }
            header[item.name] = .object(["dtype": .string(item.dtype.rawValue), "shape": .array(item.shape.map { .integer($0) }),
                                         "data_offsets": .array([.integer(offset), .integer(offset + item.bytes.count)])])
            offset += item.bytes.count
        }
        if !metadata.isEmpty { header["__metadata__"] = .object(metadata.mapValues { .string($0) }) }
        var json = Array(JSONValue.object(header).serialized().utf8)
        while json.count % 8 != 0 { json.append(0x20) }
        var data = Data()
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { data.append(contentsOf: $0) }
        data.append(contentsOf: json)
        for item in items { data.append(item.bytes) }
        return data
    }

    /// Writes the file through a temporary name and a rename.
    public static func write(_ items: [Item], metadata: [String: String] = [:], to path: String) throws {
        try AtomicFile.write(try encode(items, metadata: metadata), to: path)
    }
}

/// Errors in what a caller asked to write.
public enum LoRAFormatsError: Error, CustomStringConvertible, Equatable {
    case shape(String)
    public var description: String {
        switch self { case .shape(let m): m }
    }
}

/// Writes that matter: to `path.tmp-<pid>` in the same folder, flushed to disk, then renamed over `path`, so a
/// reader (or a crash) sees the old file or the new one, never a mixture.
public enum AtomicFile {
    public static func write(_ data: Data, to path: String) throws {
        let temporary = path + ".tmp-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw FormatError.io(path: temporary, reason: String(cString: strerror(errno))) }
        var failure: String?
        data.withUnsafeBytes { raw in
            var done = 0
            while done < raw.count {
                let n = Foundation.write(fd, raw.baseAddress! + done, raw.count - done)
                if n < 0 { if errno == EINTR { continue }; failure = String(cString: strerror(errno)); return }
                done += n
            }
            if fsync(fd) != 0 { failure = "fsync: " + String(cString: strerror(errno)) }
        }
        close(fd)
        if let failure {
            unlink(temporary)
            throw FormatError.io(path: temporary, reason: failure)
        }
        guard rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw FormatError.io(path: path, reason: "rename: " + reason)
        }
    }
}
