// Hugging Face model folders: one `model.safetensors`, or shards `model-00001-of-00003.safetensors`, ... named by
// `model.safetensors.index.json`:
//     {"metadata": {"total_size": <sum of tensor bytes>}, "weight_map": {"<tensor>": "<shard file>", ...}}
// Reading gives one view over every tensor of every file. It follows transformers 5's `from_pretrained`:
// `model.safetensors` wins when both it and an index are present; every tensor of every shard the index names is
// loaded, including tensors the index does not list (transformers merges each shard's full key set). Where
// transformers is silent and would load a wrong model, this refuses: the same tensor in two shards (transformers
// keeps the later file's), an index entry whose shard does not hold the tensor (transformers leaves the weight
// randomly initialized), shard names that leave the folder. Writing follows `save_pretrained`'s split
// (huggingface_hub's `split_torch_state_dict_into_shards`) and file names, and orders its steps so that a reader,
// or a crash at any point, finds the old model, the new one, or a clear error, never shards of two writes mixed.
import Foundation

/// The weights of a model folder: a single safetensors file or an index and its shards, mapped and validated.
public final class SafeTensorsCheckpoint: @unchecked Sendable {
    /// The single-file name (`SAFE_WEIGHTS_NAME`).
    public static let singleFileName = "model.safetensors"
    /// The index name (`SAFE_WEIGHTS_INDEX_NAME`).
    public static let indexFileName = "model.safetensors.index.json"

    public let folder: String
    /// The index read, or nil for a single file.
    public let indexPath: String?
    /// The index's `metadata` object (`total_size` and whatever else the writer put there); empty without index.
    public let indexMetadata: [String: JSONValue]
    /// Every file read: the single file, or the shards in name order.
    public let files: [SafeTensorsFile]
    /// Tensor name → index into `files`.
    private let location: [String: Int]

    /// Every tensor name, sorted.
    public var names: [String] { location.keys.sorted() }

    /// Opens the model in `folder`; every shard is mapped and its header checked, no tensor is read.
    public init(folder: String) throws {
        self.folder = folder
        let single = folder + "/" + Self.singleFileName
        let index = folder + "/" + Self.indexFileName
        if FileManager.default.fileExists(atPath: single) {
            (indexPath, indexMetadata) = (nil, [:])
            let file = try SafeTensorsFile(path: single)
            files = [file]
            location = file.entries.mapValues { _ in 0 }
            return
        }
        guard FileManager.default.fileExists(atPath: index) else {
            let shards = ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).filter(Self.isShardName).sorted()
            throw FormatError.io(path: folder, reason: "neither \(Self.singleFileName) nor \(Self.indexFileName) is present"
                + (shards.isEmpty ? "" : " (shards without an index, from an interrupted write?: \(shards.joined(separator: ", ")))"))
        }
        indexPath = index
        let weightMap: [String: String]
        (weightMap, indexMetadata) = try Self.readIndex(index)
        var tensorsByShard: [String: [String]] = [:]
        for (tensor, shard) in weightMap { tensorsByShard[shard, default: []].append(tensor) }
        var files: [SafeTensorsFile] = []
        var location: [String: Int] = [:]
        for shard in tensorsByShard.keys.sorted() {
            let path = folder + "/" + shard
            guard FileManager.default.fileExists(atPath: path) else {
                let listed = tensorsByShard[shard]!.sorted()
                throw FormatError.invalid(path: index, reason: "weight_map names shard '\(shard)' (holding '\(listed[0])'"
                    + (listed.count > 1 ? " and \(listed.count - 1) more" : "") + "), which is missing from the folder")
            }
            let file = try SafeTensorsFile(path: path)
            for name in file.entries.keys {
                if let other = location[name] {
                    throw FormatError.invalid(path: path, reason: "tensor '\(name)' is also in \(files[other].path)")
                }
                location[name] = files.count
            }
            files.append(file)
        }
        let shardIndex = Dictionary(uniqueKeysWithValues: tensorsByShard.keys.sorted().enumerated().map { ($1, $0) })
        for (tensor, shard) in weightMap.sorted(by: { $0.key < $1.key }) where location[tensor] != shardIndex[shard] {
            let holder = location[tensor].map { " (it is in \(files[$0].path))" } ?? ""
            throw FormatError.invalid(path: index, reason: "weight_map[\(JSONValue.quote(tensor))] is '\(shard)', which does not hold it\(holder)")
        }
        (self.files, self.location) = (files, location)
    }

    /// The index's weight map and metadata, every field checked.
    private static func readIndex(_ path: String) throws -> (weightMap: [String: String], metadata: [String: JSONValue]) {
        func invalid(_ reason: String) -> FormatError { .invalid(path: path, reason: reason) }
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw FormatError.io(path: path, reason: error.localizedDescription)
        }
        guard let root = (try? JSONValue.parse(data))?.objectValue else { throw invalid("not a JSON object") }
        var metadata: [String: JSONValue] = [:]
        if let value = root["metadata"] {
            guard let object = value.objectValue else { throw invalid("metadata is not an object") }
            metadata = object
        }
        guard let value = root["weight_map"] else { throw invalid("weight_map is missing") }
        guard let object = value.objectValue else { throw invalid("weight_map is not an object") }
        guard !object.isEmpty else { throw invalid("weight_map is empty") }
        var weightMap: [String: String] = [:]
        for (tensor, entry) in object {
            let field = "weight_map[\(JSONValue.quote(tensor))]"
            guard let shard = entry.stringValue else { throw invalid("\(field) is not a string") }
            guard !shard.isEmpty, shard != ".", shard != "..", !shard.contains("/"), !shard.contains("\\"),
                  !shard.contains("\0"), !shard.contains("..") else {
                throw invalid("\(field) is \(JSONValue.quote(shard)), not a file name inside the folder")
            }
            guard shard.hasSuffix(".safetensors") else {
                throw FormatError.unsupported(path: path, reason: "\(field) is '\(shard)', not a .safetensors file")
            }
            weightMap[tensor] = shard
        }
        return (weightMap, metadata)
    }

    /// Whether some file holds a tensor named `name`.
    public func contains(_ name: String) -> Bool { location[name] != nil }

    /// The path to name in a message about `name`: its file, else the index (or the single file).
    public func path(of name: String) -> String { location[name].map { files[$0].path } ?? indexPath ?? files[0].path }

    /// The file holding `name`, or an error naming the folder and the tensor.
    public func file(containing name: String) throws -> SafeTensorsFile {
        guard let i = location[name] else {
            throw FormatError.invalid(path: indexPath ?? files[0].path, reason: "no tensor named '\(name)'")
        }
        return files[i]
    }

    /// A tensor's dtype, shape and byte range within its file.
    public func entry(_ name: String) throws -> SafeTensorsFile.Entry { try file(containing: name).entry(name) }

    /// Calls `body` with a tensor's raw little-endian bytes from its mapped file (see `SafeTensorsFile.withBytes`).
    public func withBytes<R>(_ name: String, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        try file(containing: name).withBytes(name, body)
    }

    /// A tensor's elements as Float (see `SafeTensorsFile.floats`).
    public func floats(_ name: String) throws -> [Float] { try file(containing: name).floats(name) }

    /// A tensor's elements as Int (see `SafeTensorsFile.integers`).
    public func integers(_ name: String) throws -> [Int] { try file(containing: name).integers(name) }

    /// `model-DDDDD-of-DDDDD.safetensors`: what `save_pretrained` names shards and removes when stale.
    static func isShardName(_ name: String) -> Bool {
        let digits = Array(name.utf8)
        let pattern = Array("model-00000-of-00000.safetensors".utf8)
        guard digits.count == pattern.count else { return false }
        return zip(digits, pattern).allSatisfy { $1 == UInt8(ascii: "0") ? (48...57).contains($0) : $0 == $1 }
    }
}

extension SafeTensorsWriter {
    /// Writes a model folder as transformers' `save_pretrained` does: items go, in the order given, into shards of
    /// at most `maxShardBytes` tensor bytes (a tensor larger than that gets a shard of its own), named
    /// `model-00001-of-0000N.safetensors`, plus `model.safetensors.index.json` with `metadata.total_size` (the sum
    /// of tensor bytes) and the `weight_map` (keys sorted); or one `model.safetensors` when all fit in one shard.
    /// Each file is written atomically and each item produces its bytes only while its shard is written.
    /// (transformers 5's `save_pretrained` hands the same split its keys sorted by name: pass items sorted by name
    /// to get exactly its files.)
    ///
    /// Order, so that a failing item or a crash anywhere leaves the old model, the new one, or a clear error,
    /// never shards of two writes mixed: every shard is first written under a temporary name (`<shard>.tmp-<pid>`;
    /// an item that throws removes them and leaves the folder as it was, at the cost of disk space for both models
    /// meanwhile); then the old index is removed, the shards renamed into place, the new index written, and last an
    /// old `model.safetensors` (which readers prefer over an index) and shards the new index does not name are
    /// removed. Writing a single file replaces `model.safetensors` first, then removes any index and shards.
    ///
    /// - Parameters:
    ///   - maxShardBytes: transformers' `max_shard_size` in bytes; huggingface_hub's default is 5 GB.
    ///   - metadata: each file's `__metadata__`; transformers writes `format: pt`.
    /// - Returns: the file names written, the index last.
    @discardableResult
    public static func writeCheckpoint(_ items: [Item], to folder: String, maxShardBytes: Int = 5_000_000_000,
                                       metadata: [String: String] = ["format": "pt"]) throws -> [String] {
        precondition(maxShardBytes > 0, "writeCheckpoint: maxShardBytes must be positive")
        var seen = Set<String>()
        var sizes: [Int] = []
        for item in items {
            guard seen.insert(item.name).inserted else { throw LoRAFormatsError.shape("safetensors: the name '\(item.name)' is used twice") }
            sizes.append(try item.checkedByteCount())
        }
        // huggingface_hub's split: a tensor over the limit is a shard of its own (placed before the one being
        // filled); otherwise a tensor that would overflow the current shard starts the next.
        var shards: [[Int]] = []
        var current: [Int] = []
        var currentBytes = 0
        for (i, size) in sizes.enumerated() {
            if size > maxShardBytes { shards.append([i]); continue }
            if currentBytes + size > maxShardBytes { shards.append(current); (current, currentBytes) = ([], 0) }
            current.append(i)
            currentBytes += size
        }
        if !current.isEmpty || shards.isEmpty { shards.append(current) }

        do { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) } catch {
            throw FormatError.io(path: folder, reason: error.localizedDescription)
        }
        let index = folder + "/" + SafeTensorsCheckpoint.indexFileName
        let existing = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
        if shards.count == 1 {
            try write(items, metadata: metadata, to: folder + "/" + SafeTensorsCheckpoint.singleFileName)
            try AtomicFile.remove(index)
            for stale in existing where SafeTensorsCheckpoint.isShardName(stale) { try AtomicFile.remove(folder + "/" + stale) }
            return [SafeTensorsCheckpoint.singleFileName]
        }
        let names = (1...shards.count).map { "model-\(fiveDigits($0))-of-\(fiveDigits(shards.count)).safetensors" }
        let staged = names.map { folder + "/" + $0 + ".tmp-\(getpid())" }
        do {
            for (path, members) in zip(staged, shards) { try write(members.map { items[$0] }, metadata: metadata, to: path) }
        } catch {
            for path in staged { unlink(path) }
            throw error
        }
        try AtomicFile.remove(index)
        var weightMap: [String: JSONValue] = [:]
        for (i, (shard, members)) in zip(names, shards).enumerated() {
            try AtomicFile.move(staged[i], to: folder + "/" + shard)
            for i in members { weightMap[items[i].name] = .string(shard) }
        }
        let json = JSONValue.object(["metadata": .object(["total_size": .integer(sizes.reduce(0, +))]), "weight_map": .object(weightMap)])
        try AtomicFile.write(Data((json.serialized() + "\n").utf8), to: index)
        try AtomicFile.remove(folder + "/" + SafeTensorsCheckpoint.singleFileName)
        for stale in existing where SafeTensorsCheckpoint.isShardName(stale) && !names.contains(stale) {
            try AtomicFile.remove(folder + "/" + stale)
        }
        return names + [SafeTensorsCheckpoint.indexFileName]
    }

    private static func fiveDigits(_ n: Int) -> String {
        let digits = String(n)
        return String(repeating: "0", count: max(0, 5 - digits.count)) + digits
    }
}
