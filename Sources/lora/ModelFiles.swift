// Files that travel with a model folder the CLI writes (merged or fully fine-tuned): the tokenizer and
// generation settings, copied atomically.
import Foundation
import SwiftLoRA

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
