// Model folders for the commands: the model (any family the registry knows), its tokenizer, text files read as
// token ids, and the files that travel with a folder the CLI writes (tokenizer, generation settings).
import ArgumentParser
import Foundation
import SwiftLoRA

/// The model in `folder`, whatever its family (config.json's model_type).
func loadModel(_ folder: String, backend: any Backend, options: ModelLoadOptions) throws -> any LanguageModel {
    try ModelRegistry.standard.load(folder: folder, backend: backend, options: options)
}

/// The token ids of a UTF-8 text file (no special tokens added).
func tokenizeFile(_ path: String, with tokenizer: any Tokenizer) throws -> [Int] {
    guard let bytes = FileManager.default.contents(atPath: path) else { throw ValidationError("\(path): cannot be read") }
    guard let text = String(data: bytes, encoding: .utf8) else { throw ValidationError("\(path): not UTF-8 text") }
    guard !text.isEmpty else { throw ValidationError("\(path) is empty") }
    return try tokenizer.encode(text)
}

/// Copies the tokenizer and generation files `source` has into `target`; returns their names.
func copyTokenizerFiles(from source: String, to target: String) throws -> [String] {
    var copied: [String] = []
    for file in ["vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"] {
        let from = source + "/" + file
        guard FileManager.default.fileExists(atPath: from) else { continue }
        try AtomicFile.write(try Data(contentsOf: URL(fileURLWithPath: from)), to: target + "/" + file)
        copied.append(file)
    }
    return copied
}

/// Writes a model folder through a temporary sibling: `body` fills it, then it takes `out`'s place (an existing
/// folder is moved aside first and removed after), so a failure part way leaves `out` as it was.
func writeFolder(_ out: String, _ body: (String) throws -> Void) throws {
    let files = FileManager.default
    var isFolder: ObjCBool = false
    if files.fileExists(atPath: out, isDirectory: &isFolder), !isFolder.boolValue {
        throw ValidationError("--out \(out) is a file, not a folder")
    }
    let url = URL(fileURLWithPath: out).standardizedFileURL
    let (parent, name) = (url.deletingLastPathComponent().path, url.lastPathComponent)
    let temporary = parent + "/.\(name).partial-\(getpid())"
    try? files.removeItem(atPath: temporary)
    try files.createDirectory(atPath: temporary, withIntermediateDirectories: true)
    do { try body(temporary) } catch {
        try? files.removeItem(atPath: temporary)
        throw error
    }
    if files.fileExists(atPath: url.path) {
        let previous = parent + "/.\(name).previous-\(getpid())"
        try files.moveItem(atPath: url.path, toPath: previous)
        try files.moveItem(atPath: temporary, toPath: url.path)
        try? files.removeItem(atPath: previous)
    } else {
        try files.moveItem(atPath: temporary, toPath: url.path)
    }
}

/// Throws unless `out` and `model` are different folders (writing over the input would destroy it).
func requireDistinct(out: String, model: String) throws {
    let (source, target) = (URL(fileURLWithPath: model).standardizedFileURL.path, URL(fileURLWithPath: out).standardizedFileURL.path)
    guard source != target else { throw ValidationError("--out must differ from --model: writing in place would overwrite the input") }
}
