// Model folders: sharded writes read back, huggingface_hub's split and names, stale files from earlier writes,
// interrupted writes, every index error, and thousands of mutated index files. `LORA_FORMATS_EXPORT=DIR` makes
// `exportForTransformers` leave a sharded bf16 GPT-2 folder in DIR for Tests/Fixtures/check_safetensors.py.
import Foundation
@testable import LoRAFormats
import LoRARuntime
import LoRATestSupport
import Testing

@Suite("safetensors checkpoints")
struct SafeTensorsCheckpointTests {
    let directory: URL = {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("lora-ckpt-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }()

    /// Values with more mantissa bits than bf16 or f16 hold, so writing them rounds (the Python check recomputes them).
    static func values(_ count: Int, seed: Int) -> [Float] {
        (0..<count).map { Float(($0 * 7919 + seed * 104_729) % 100_003) + 0.5 - 50_000 }
    }

    func folder(_ name: String) -> String { directory.appendingPathComponent(name).path }

    func files(_ folder: String) throws -> [String] { try FileManager.default.contentsOfDirectory(atPath: folder).sorted() }

    /// `sizes[i]` bytes of bf16 named `t<i>`.
    static func items(_ sizes: [Int]) -> [SafeTensorsWriter.Item] {
        sizes.enumerated().map { .floats("t\($0)", dtype: .bf16, shape: [$1 / 2], values: values($1 / 2, seed: $0)) }
    }

    func write(_ text: String, _ path: String) throws { try Data(text.utf8).write(to: URL(fileURLWithPath: path)) }

    @Test("a sharded write reads back: huggingface_hub's split, names, total_size, sorted weight_map")
    func shardedRoundTrip() throws {
        let path = folder("sharded")
        // huggingface_hub's docstring example (limit 10: [6], [6, 2], [6, 2, 2]), plus a 12 that is over the limit
        // and goes into a shard of its own ahead of the one being filled.
        let sizes = [6, 6, 2, 12, 6, 2, 2].map { $0 * 100 }
        let written = try SafeTensorsWriter.writeCheckpoint(Self.items(sizes), to: path, maxShardBytes: 1000)
        let names = (1...4).map { "model-0000\($0)-of-00004.safetensors" }
        #expect(written == names + ["model.safetensors.index.json"])
        #expect(try files(path) == names + ["model.safetensors.index.json"])
        let checkpoint = try SafeTensorsCheckpoint(folder: path)
        #expect(checkpoint.indexPath == path + "/model.safetensors.index.json")
        #expect(checkpoint.indexMetadata["total_size"] == .integer(sizes.reduce(0, +)))
        #expect(checkpoint.files.map { $0.path } == names.map { path + "/" + $0 })
        #expect(checkpoint.files.map { $0.names } == [["t0"], ["t3"], ["t1", "t2"], ["t4", "t5", "t6"]])
        #expect(checkpoint.names == (0..<7).map { "t\($0)" })
        #expect(checkpoint.files.allSatisfy { $0.metadata == ["format": "pt"] })
        for (i, size) in sizes.enumerated() {
            let entry = try checkpoint.entry("t\(i)")
            #expect(entry.dtype == .bf16 && entry.shape == [size / 2])
            #expect(try checkpoint.floats("t\(i)") == Self.values(size / 2, seed: i).map { Float(bfloat16Bits: $0.bfloat16Bits) })
            let bytes = try checkpoint.withBytes("t\(i)") { [UInt8]($0) }
            #expect(bytes.count == size)
        }
        let index = try String(contentsOfFile: path + "/model.safetensors.index.json", encoding: .utf8)
        let keys = index.split(separator: "\n").filter { $0.contains(".safetensors") }.map { String($0.split(separator: "\"")[1]) }
        #expect(keys == keys.sorted() && keys.count == 7)
        #expect(throws: FormatError.self) { try checkpoint.floats("missing") }
    }

    @Test("everything within one shard is a single model.safetensors, and an empty model is one too")
    func singleFile() throws {
        let path = folder("single")
        #expect(try SafeTensorsWriter.writeCheckpoint(Self.items([400, 600]), to: path, maxShardBytes: 1000) == ["model.safetensors"])
        #expect(try files(path) == ["model.safetensors"])
        let checkpoint = try SafeTensorsCheckpoint(folder: path)
        #expect(checkpoint.indexPath == nil && checkpoint.names == ["t0", "t1"])
        #expect(try SafeTensorsWriter.writeCheckpoint([], to: folder("empty")) == ["model.safetensors"])
        #expect(try SafeTensorsCheckpoint(folder: folder("empty")).names.isEmpty)
    }

    @Test("rewrites leave nothing stale: fewer shards, sharded over single, single over sharded; other files stay")
    func staleFiles() throws {
        let path = folder("stale")
        try SafeTensorsWriter.writeCheckpoint(Self.items([800, 800, 800]), to: path, maxShardBytes: 1000)
        try write("{}", path + "/config.json")
        #expect(try files(path).count == 5)
        try SafeTensorsWriter.writeCheckpoint(Self.items([800, 800]), to: path, maxShardBytes: 1000)
        #expect(try files(path) == ["config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                                     "model.safetensors.index.json"])
        #expect(try SafeTensorsCheckpoint(folder: path).names == ["t0", "t1"])
        try SafeTensorsWriter.writeCheckpoint(Self.items([300]), to: path, maxShardBytes: 1000)
        #expect(try files(path) == ["config.json", "model.safetensors"])
        try SafeTensorsWriter.writeCheckpoint(Self.items([800, 800]), to: path, maxShardBytes: 1000)
        #expect(try files(path) == ["config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                                     "model.safetensors.index.json"])
        #expect(try SafeTensorsCheckpoint(folder: path).floats("t1") == Self.values(400, seed: 1).map { Float(bfloat16Bits: $0.bfloat16Bits) })
    }

    /// Items whose third tensor fails while being produced, as a device read or a full disk would.
    static func failing() -> [SafeTensorsWriter.Item] {
        var items = items([800, 800])
        items.append(SafeTensorsWriter.Item(name: "t2", dtype: .bf16, shape: [400]) { emit in
            try [UInt8](repeating: 0, count: 100).withUnsafeBytes { try emit($0) }
            throw LoRAFormatsError.shape("device lost")
        })
        return items
    }

    @Test("a write whose item fails leaves the old model as it was, single or sharded; a crash before the index names the cause")
    func interruptedWrites() throws {
        let overSingle = folder("interrupted-single")
        try SafeTensorsWriter.writeCheckpoint(Self.items([300]), to: overSingle)
        #expect(throws: LoRAFormatsError.self) { try SafeTensorsWriter.writeCheckpoint(Self.failing(), to: overSingle, maxShardBytes: 1000) }
        #expect(try files(overSingle) == ["model.safetensors"])
        #expect(try SafeTensorsCheckpoint(folder: overSingle).entry("t0").shape == [150])

        let overSharded = folder("interrupted-sharded")
        try SafeTensorsWriter.writeCheckpoint(Self.items([800, 800, 800]), to: overSharded, maxShardBytes: 1000)
        let before = try files(overSharded)
        #expect(throws: LoRAFormatsError.self) { try SafeTensorsWriter.writeCheckpoint(Self.failing(), to: overSharded, maxShardBytes: 1000) }
        #expect(try files(overSharded) == before)
        let old = try SafeTensorsCheckpoint(folder: overSharded)
        #expect(old.names == ["t0", "t1", "t2"] && old.files.count == 3)
        #expect(try old.floats("t2") == Self.values(400, seed: 2).map { Float(bfloat16Bits: $0.bfloat16Bits) })

        // A crash after the old index went and before the new one was written: shards, no index.
        try FileManager.default.removeItem(atPath: overSharded + "/model.safetensors.index.json")
        let error = #expect(throws: FormatError.self) { try SafeTensorsCheckpoint(folder: overSharded) }
        #expect(error?.description.contains("shards without an index") == true, "\(String(describing: error))")
    }

    @Test("wrong byte counts, bad shapes and repeated names are refused before the folder is touched")
    func badItems() throws {
        let path = folder("bad-items")
        try SafeTensorsWriter.writeCheckpoint(Self.items([800, 800]), to: path, maxShardBytes: 1000)
        let before = try files(path)
        let cases: [[SafeTensorsWriter.Item]] = [
            Self.items([800]) + [SafeTensorsWriter.Item(name: "short", dtype: .bf16, shape: [4], bytes: Data(count: 6))],
            Self.items([800]) + [.float32("negative", shape: [-2], values: [])],
            Self.items([800, 800]) + Self.items([800]),
        ]
        for items in cases {
            #expect(throws: LoRAFormatsError.self) { try SafeTensorsWriter.writeCheckpoint(items, to: path, maxShardBytes: 1000) }
            #expect(try files(path) == before)
        }
    }

    /// A folder with two shards (`a`, `b` in the first; `c` in the second) and `index` as its index.
    func shardedFolder(_ name: String, index: String, first: [String] = ["a", "b"], second: [String] = ["c"]) throws -> String {
        let path = folder(name)
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        try SafeTensorsWriter.write(first.map { .float32($0, shape: [2], values: [1, 2]) }, to: path + "/s1.safetensors")
        try SafeTensorsWriter.write(second.map { .float32($0, shape: [1], values: [3]) }, to: path + "/s2.safetensors")
        try write(index, path + "/model.safetensors.index.json")
        return path
    }

    static let goodIndex = #"{"metadata": {"total_size": 20}, "weight_map": {"a": "s1.safetensors", "b": "s1.safetensors", "c": "s2.safetensors"}}"#

    @Test("a hand-made index with other shard names and an unlisted tensor loads, as transformers would")
    func lenientIndex() throws {
        let path = try shardedFolder("lenient", index: #"{"metadata": {}, "weight_map": {"a": "s1.safetensors", "c": "s2.safetensors"}}"#)
        let checkpoint = try SafeTensorsCheckpoint(folder: path)
        // `b` is in s1 but not in the weight map: transformers loads every tensor of every shard the index names.
        #expect(checkpoint.names == ["a", "b", "c"])
        #expect(try checkpoint.floats("b") == [1, 2] && checkpoint.floats("c") == [3])
        let noMetadata = try shardedFolder("no-metadata", index: #"{"weight_map": {"a": "s1.safetensors", "c": "s2.safetensors"}}"#)
        #expect(try SafeTensorsCheckpoint(folder: noMetadata).names == ["a", "b", "c"])
    }

    @Test("bad indexes name the file and the field", arguments: [
        ("{\"weight_map\": ", "not a JSON object"),
        ("[1]", "not a JSON object"),
        ("{\"metadata\": {}}", "weight_map is missing"),
        ("{\"weight_map\": [\"s1.safetensors\"]}", "weight_map is not an object"),
        ("{\"weight_map\": {}}", "weight_map is empty"),
        ("{\"weight_map\": {\"a\": 1}}", "weight_map[\"a\"] is not a string"),
        ("{\"metadata\": 3, \"weight_map\": {\"a\": \"s1.safetensors\"}}", "metadata is not an object"),
        ("{\"weight_map\": {\"a\": \"../s1.safetensors\"}}", "not a file name inside the folder"),
        ("{\"weight_map\": {\"a\": \"sub/s1.safetensors\"}}", "not a file name inside the folder"),
        ("{\"weight_map\": {\"a\": \"/etc/passwd\"}}", "not a file name inside the folder"),
        ("{\"weight_map\": {\"a\": \"..\"}}", "not a file name inside the folder"),
        ("{\"weight_map\": {\"a\": \"s1\\\\..\\\\x.safetensors\"}}", "not a file name inside the folder"),
        ("{\"weight_map\": {\"a\": \"\"}}", "not a file name inside the folder"),
        ("{\"weight_map\": {\"a\": \"s1.bin\"}}", "not a .safetensors file"),
        ("{\"weight_map\": {\"a\": \"s1.safetensors\", \"x\": \"s3.safetensors\", \"y\": \"s3.safetensors\"}}",
         "weight_map names shard 's3.safetensors' (holding 'x' and 1 more), which is missing"),
        ("{\"weight_map\": {\"a\": \"s1.safetensors\", \"z\": \"s1.safetensors\"}}", "weight_map[\"z\"] is 's1.safetensors', which does not hold it"),
        ("{\"weight_map\": {\"a\": \"s1.safetensors\", \"c\": \"s1.safetensors\", \"b\": \"s2.safetensors\"}}",
         "weight_map[\"b\"] is 's2.safetensors', which does not hold it (it is in"),
    ])
    func badIndex(index: String, reason: String) throws {
        let path = try shardedFolder("bad-\(UUID().uuidString)", index: index)
        let error = #expect(throws: FormatError.self) { try SafeTensorsCheckpoint(folder: path) }
        #expect(error?.description.contains(reason) == true, "\(String(describing: error))")
        #expect(error?.description.contains("model.safetensors.index.json") == true, "names the index: \(String(describing: error))")
    }

    @Test("the same tensor in two shards is refused, naming both files")
    func duplicateTensor() throws {
        let path = try shardedFolder("duplicate", index: Self.goodIndex, second: ["c", "a"])
        let error = #expect(throws: FormatError.self) { try SafeTensorsCheckpoint(folder: path) }
        #expect(error?.description.contains("tensor 'a' is also in") == true, "\(String(describing: error))")
        #expect(error?.description.contains("s1.safetensors") == true && error?.description.contains("s2.safetensors") == true)
    }

    @Test("a corrupt shard is named; model.safetensors wins over an index; an empty folder says what is missing")
    func folderErrors() throws {
        let corrupt = try shardedFolder("corrupt", index: Self.goodIndex)
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: corrupt + "/s2.safetensors"))
        let error = #expect(throws: FormatError.self) { try SafeTensorsCheckpoint(folder: corrupt) }
        #expect(error?.description.hasPrefix(corrupt + "/s2.safetensors") == true, "\(String(describing: error))")

        let both = try shardedFolder("both", index: Self.goodIndex)
        try SafeTensorsWriter.write([.float32("only", shape: [1], values: [7])], to: both + "/model.safetensors")
        let checkpoint = try SafeTensorsCheckpoint(folder: both)
        #expect(checkpoint.names == ["only"] && checkpoint.indexPath == nil)

        let empty = folder("nothing")
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        let missing = #expect(throws: FormatError.self) { try SafeTensorsCheckpoint(folder: empty) }
        #expect(missing?.description.contains("neither model.safetensors nor model.safetensors.index.json") == true)
        #expect(throws: FormatError.self) { try SafeTensorsCheckpoint(folder: folder("does-not-exist")) }
    }

    @Test("thousands of mutated index files: a FormatError or a consistent load, never a crash or an escape")
    func fuzzIndex() throws {
        let path = try shardedFolder("fuzz", index: Self.goodIndex)
        let original = Array(Self.goodIndex.utf8)
        let pieces = ["s1.safetensors", "s2.safetensors", "../s1.safetensors", "\"", "{", "}", ",", "a", "weight_map",
                      "metadata", "null", "[]", "s3.safetensors", "/", "\\u0000"].map { Array($0.utf8) }
        var generator = SeededGenerator(seed: 2024)
        var (loaded, rejected) = (0, 0)
        for round in 0..<2000 {
            var bytes = original
            for _ in 0..<(1 + round % 3) {
                let at = Int.random(in: 0..<bytes.count, using: &generator)
                switch Int.random(in: 0..<4, using: &generator) {
                case 0: bytes[at] = UInt8.random(in: 32...126, using: &generator)
                case 1: bytes.remove(at: at)
                case 2: bytes.insert(contentsOf: pieces.randomElement(using: &generator)!, at: at)
                default: bytes.removeLast(Int.random(in: 0..<(bytes.count - at), using: &generator))
                }
                if bytes.isEmpty { bytes = [0x20] }
            }
            try Data(bytes).write(to: URL(fileURLWithPath: path + "/model.safetensors.index.json"))
            do {
                let checkpoint = try SafeTensorsCheckpoint(folder: path)
                #expect(checkpoint.files.allSatisfy { $0.path.hasPrefix(path + "/s") })
                for name in checkpoint.names { #expect(try checkpoint.floats(name).count == checkpoint.entry(name).count) }
                loaded += 1
            } catch is FormatError {
                rejected += 1
            }
        }
        #expect(loaded + rejected == 2000)
        #expect(rejected > 500 && loaded > 50, "loaded \(loaded), rejected \(rejected)")
    }

    /// A tiny GPT-2 (1 layer, 8 wide, vocab 16, 8 positions) in state_dict order, as bf16.
    static func gpt2Items() -> [SafeTensorsWriter.Item] {
        let (e, v, p) = (8, 16, 8)
        let shapes: [(String, [Int])] = [("transformer.wte.weight", [v, e]), ("transformer.wpe.weight", [p, e]),
            ("transformer.h.0.ln_1.weight", [e]), ("transformer.h.0.ln_1.bias", [e]),
            ("transformer.h.0.attn.c_attn.weight", [e, 3 * e]), ("transformer.h.0.attn.c_attn.bias", [3 * e]),
            ("transformer.h.0.attn.c_proj.weight", [e, e]), ("transformer.h.0.attn.c_proj.bias", [e]),
            ("transformer.h.0.ln_2.weight", [e]), ("transformer.h.0.ln_2.bias", [e]),
            ("transformer.h.0.mlp.c_fc.weight", [e, 4 * e]), ("transformer.h.0.mlp.c_fc.bias", [4 * e]),
            ("transformer.h.0.mlp.c_proj.weight", [4 * e, e]), ("transformer.h.0.mlp.c_proj.bias", [e]),
            ("transformer.ln_f.weight", [e]), ("transformer.ln_f.bias", [e])]
        return shapes.enumerated().map { i, item in
            .floats(item.0, dtype: .bf16, shape: item.1, values: values(item.1.reduce(1, *), seed: i))
        }
    }

    @Test("a sharded bf16 GPT-2 folder (LORA_FORMATS_EXPORT=DIR keeps one for check_safetensors.py)")
    func exportForTransformers() throws {
        let path = ProcessInfo.processInfo.environment["LORA_FORMATS_EXPORT"] ?? folder("gpt2-bf16")
        let written = try SafeTensorsWriter.writeCheckpoint(Self.gpt2Items(), to: path, maxShardBytes: 600)
        try AtomicFile.write(Data(#"{"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_layer": 1, "n_head": 2, "n_embd": 8, "vocab_size": 16, "n_positions": 8, "bos_token_id": 0, "eos_token_id": 0}"#.utf8),
                             to: path + "/config.json")
        #expect(written.count > 3 && written.last == "model.safetensors.index.json")
        let checkpoint = try SafeTensorsCheckpoint(folder: path)
        #expect(checkpoint.names.count == 16)
        #expect(checkpoint.names.allSatisfy { (try? checkpoint.entry($0).dtype) == .bf16 })
    }
}
