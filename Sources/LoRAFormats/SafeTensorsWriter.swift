// Writing safetensors: one file, or a Hugging Face model folder split into shards. A file is the 8-byte
// little-endian header length, the JSON header (keys sorted, padded with spaces to a multiple of 8 so the data
// starts 8-aligned), then each item's bytes in the order given. Items produce their bytes only while the file is
// written, in chunks, so writing a model never holds a second copy of it; every file goes through a temporary
// name and a rename (AtomicFile).
import Foundation

/// Writes safetensors files.
public enum SafeTensorsWriter {
    /// One tensor to write: name, dtype, row-major shape, and where its little-endian bytes come from.
    public struct Item {
        public let name: String
        public let dtype: SafeTensorsDType
        public let shape: [Int]
        /// Bytes the source will produce when known without producing them (checked before anything is written).
        let knownByteCount: Int?
        /// Passes the tensor's bytes, in order, to `emit`, in as many pieces as it likes.
        let produce: (_ emit: (UnsafeRawBufferPointer) throws -> Void) throws -> Void

        /// A tensor from its raw little-endian bytes (`shape.product · dtype.size` of them).
        public init(name: String, dtype: SafeTensorsDType, shape: [Int], bytes: Data) {
            (self.name, self.dtype, self.shape, knownByteCount) = (name, dtype, shape, bytes.count)
            produce = { emit in try bytes.withUnsafeBytes { try emit($0) } }
        }

        /// A tensor whose little-endian bytes are produced only when the file is written: `produce` passes them to
        /// its `emit` argument in order, in pieces of any size (it may, for example, read a device tensor or a
        /// mapped file a slice at a time). Producing more or fewer than `shape.product · dtype.size` bytes makes the
        /// write throw and leaves no file behind.
        public init(name: String, dtype: SafeTensorsDType, shape: [Int],
                    produce: @escaping (_ emit: (UnsafeRawBufferPointer) throws -> Void) throws -> Void) {
            (self.name, self.dtype, self.shape, knownByteCount, self.produce) = (name, dtype, shape, nil, produce)
        }

        /// A tensor from float values, stored as `dtype`: F32 as is, BF16 and F16 rounded to nearest even while the
        /// file is written (`Float.bfloat16Bits`, `Float.float16Bits`), 64 Ki elements at a time.
        public static func floats(_ name: String, dtype: SafeTensorsDType, shape: [Int], values: [Float]) -> Item {
            let convert: ((UnsafeRawBufferPointer, UnsafeMutableRawBufferPointer) -> Void)?
            switch dtype {
            case .f32: convert = nil
            case .bf16: convert = convertFloat32ToBFloat16
            case .f16: convert = convertFloat32ToFloat16
            default: preconditionFailure("SafeTensorsWriter.Item.floats: dtype \(dtype.rawValue) is not F32, BF16 or F16")
            }
            return Item(name: name, dtype: dtype, shape: shape, knownByteCount: values.count * dtype.size) { emit in
                try values.withUnsafeBytes { source in
                    #if _endian(little)
                    if convert == nil { return try emit(source) }
                    #endif
                    let chunk = 1 << 16
                    let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk * dtype.size, alignment: 64)
                    defer { scratch.deallocate() }
                    var start = 0
                    while start < values.count {
                        let n = min(chunk, values.count - start)
                        let piece = UnsafeRawBufferPointer(rebasing: source[(4 * start)..<(4 * (start + n))])
                        let out = UnsafeMutableRawBufferPointer(rebasing: scratch[0..<(n * dtype.size)])
                        if let convert { convert(piece, out) } else {
                            for i in 0..<n {
                                out.storeBytes(of: piece.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self).littleEndian,
                                               toByteOffset: 4 * i, as: UInt32.self)
                            }
                        }
                        try emit(UnsafeRawBufferPointer(out))
                        start += n
                    }
                }
            }
        }

        /// An F32 tensor.
        public static func float32(_ name: String, shape: [Int], values: [Float]) -> Item {
            floats(name, dtype: .f32, shape: shape, values: values)
        }

        /// An I64 tensor.
        public static func int64(_ name: String, shape: [Int], values: [Int]) -> Item {
            Item(name: name, dtype: .i64, shape: shape, knownByteCount: values.count * 8) { emit in
                var data = [UInt8](repeating: 0, count: values.count * 8)
                data.withUnsafeMutableBytes { out in
                    for (i, v) in values.enumerated() { out.storeBytes(of: Int64(v).littleEndian, toByteOffset: 8 * i, as: Int64.self) }
                }
                try data.withUnsafeBytes { try emit($0) }
            }
        }

        init(name: String, dtype: SafeTensorsDType, shape: [Int], knownByteCount: Int?,
             produce: @escaping (_ emit: (UnsafeRawBufferPointer) throws -> Void) throws -> Void) {
            (self.name, self.dtype, self.shape, self.knownByteCount, self.produce) = (name, dtype, shape, knownByteCount, produce)
        }

        /// `shape.product · dtype.size`, or an error naming the tensor when a dimension is negative or the product
        /// overflows.
        func byteCount() throws -> Int {
            var bytes = dtype.size
            for d in shape {
                let (product, overflow) = bytes.multipliedReportingOverflow(by: d)
                guard d >= 0, !overflow else {
                    throw LoRAFormatsError.shape("safetensors: '\(name)' has an invalid shape \(shape)")
                }
                bytes = product
            }
            return bytes
        }

        /// `byteCount()`, also checked against the bytes the source is known to hold.
        func checkedByteCount() throws -> Int {
            let bytes = try byteCount()
            if let known = knownByteCount, known != bytes {
                throw LoRAFormatsError.shape("safetensors: '\(name)' \(dtype.rawValue) \(shape) needs \(bytes) bytes, got \(known)")
            }
            return bytes
        }
    }

    /// The file's bytes, in memory (for small files; `write` streams).
    public static func encode(_ items: [Item], metadata: [String: String] = [:]) throws -> Data {
        var data = Data()
        try stream(items, metadata: metadata) { data.append(contentsOf: $0) }
        return data
    }

    /// Writes one file through a temporary name and a rename, producing each item's bytes as it goes.
    public static func write(_ items: [Item], metadata: [String: String] = [:], to path: String) throws {
        let header = try header(items, metadata: metadata)
        try AtomicFile.write(to: path) { emit in try stream(items, header: header, emit) }
    }

    /// Checks the items (shapes, byte counts known in advance, unique names) and builds the header: 8-byte length,
    /// then the JSON padded with spaces to a multiple of 8.
    static func header(_ items: [Item], metadata: [String: String]) throws -> [UInt8] {
        var header: [String: JSONValue] = [:]
        var offset = 0
        for item in items {
            let bytes = try item.checkedByteCount()
            guard header[item.name] == nil, item.name != "__metadata__" else {
                throw LoRAFormatsError.shape("safetensors: the name '\(item.name)' is used twice or reserved")
            }
            header[item.name] = .object(["dtype": .string(item.dtype.rawValue), "shape": .array(item.shape.map { .integer($0) }),
                                         "data_offsets": .array([.integer(offset), .integer(offset + bytes)])])
            offset += bytes
        }
        if !metadata.isEmpty { header["__metadata__"] = .object(metadata.mapValues { .string($0) }) }
        var json = Array(JSONValue.object(header).serialized().utf8)
        while json.count % 8 != 0 { json.append(0x20) }
        return withUnsafeBytes(of: UInt64(json.count).littleEndian, Array.init) + json
    }

    static func stream(_ items: [Item], metadata: [String: String], _ emit: (UnsafeRawBufferPointer) throws -> Void) throws {
        try stream(items, header: header(items, metadata: metadata), emit)
    }

    /// Emits the header, then each item's bytes, checking that each produces exactly what its header entry says.
    static func stream(_ items: [Item], header: [UInt8], _ emit: (UnsafeRawBufferPointer) throws -> Void) throws {
        try header.withUnsafeBytes { try emit($0) }
        for item in items {
            let expected = try item.byteCount()
            var produced = 0
            try item.produce { piece in
                produced += piece.count
                guard produced <= expected else {
                    throw LoRAFormatsError.shape("safetensors: '\(item.name)' \(item.dtype.rawValue) \(item.shape) produced more than its \(expected) bytes")
                }
                try emit(piece)
            }
            guard produced == expected else {
                throw LoRAFormatsError.shape("safetensors: '\(item.name)' \(item.dtype.rawValue) \(item.shape) produced \(produced) of its \(expected) bytes")
            }
        }
    }
}

/// Errors in what a caller asked to write.
public enum LoRAFormatsError: Error, CustomStringConvertible, Equatable {
    case shape(String)
    public var description: String {
        switch self { case .shape(let m): m }
    }
}
