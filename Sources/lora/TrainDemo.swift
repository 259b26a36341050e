// `lora train` with no arguments: adapts Models/tiny-base (a byte-level GPT-2 this project trained with
// `lora train --full` to copy 4-letter words, "abcd=abcd") with LoRA to a task it cannot do: reversing them,
// "abcd>dcba". Prints the exact-match accuracy on 200 held-out words before and after, the fraction of
// parameters trained, tokens/s, and where the adapter, metrics and plot went. Nothing is downloaded.
import ArgumentParser
import Foundation
import SwiftLoRA

struct TrainDemo {
    let options: TrainCommand

    /// Models/tiny-base from the working directory, or next to the build folder the binary runs from.
    static func baseModel() throws -> String {
        let executable = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        let candidates = ["Models/tiny-base",
                          executable.deletingLastPathComponent().appendingPathComponent("../../../Models/tiny-base").standardized.path,
                          executable.deletingLastPathComponent().appendingPathComponent("../../Models/tiny-base").standardized.path]
        guard let found = candidates.first(where: { FileManager.default.fileExists(atPath: $0 + "/model.safetensors") }) else {
            throw ValidationError("the built-in demo needs the base model Models/tiny-base; run it from the repository root")
        }
        return found
    }

    func run() throws {
        let base = try Self.baseModel()
        var generator = SeededGenerator(seed: 7)
        let letters = Array("abcdefghijklmnopqrstuvwxyz")
        var words = Set<String>()
        while words.count < 4200 { words.insert(String((0..<4).map { _ in letters[Int(generator.next() % 26)] })) }
        let ordered = words.sorted()
        var shuffled = ordered
        for i in stride(from: shuffled.count - 1, to: 0, by: -1) { shuffled.swapAt(i, Int(generator.next() % UInt64(i + 1))) }
        let (heldOut, train) = (Array(shuffled.prefix(200)), Array(shuffled.dropFirst(200)))
        let out = options.out == "lora-out" ? "lora-demo" : options.out
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let dataPath = out + "/reverse-train.txt"
        try AtomicFile.write(Data(train.map { "\($0)>\(String($0.reversed()))\n" }.joined().utf8), to: dataPath)

        print("built-in demo: LoRA teaches \(base) (trained by this project to copy words, \"abcd=abcd\") to reverse them, \"abcd>dcba\"")
        let arguments = ["--model", base, "--data", dataPath, "--seq", "9", "--batch", "32", "--steps", "400",
                         "--lr", "5e-3", "--rank", "8", "--alpha", "16", "--seed", "3",
                         "--targets", "attn.c_attn,attn.c_proj", "--out", out] + (options.device.device.map { ["--device", $0] } ?? [])
        let command = try TrainCommand.parse(arguments)
        let trainer = try command.prepare()
        let tokenizer = try loadTokenizer(folder: base)
        let before = try accuracy(trainer.model, tokenizer, heldOut)
        print(String(format: "held-out accuracy before: %.1f%% of %d words reversed exactly", 100 * before, heldOut.count))
        // Stopped by Ctrl-C, it prints the explicit command that resumes it (a bare `lora train` would start over).
        let run = try TrainingRun(command: command, trainer: trainer, commandLine: [CommandLine.arguments[0], "train"] + arguments).execute()
        let after = try accuracy(trainer.model, tokenizer, heldOut)
        print(String(format: "held-out accuracy after:  %.1f%% (was %.1f%%); %d of %d parameters trained (%.2f%%), %.0f tokens/s",
                     100 * after, 100 * before, run.trained, run.total, 100 * Double(run.trained) / Double(run.total), run.tokensPerSecond))
    }

    /// Exact-match rate of greedy 4-token answers to "abcd>" prompts.
    func accuracy(_ model: any LanguageModel, _ tokenizer: any Tokenizer, _ words: [String]) throws -> Double {
        let prompts = try words.map { try tokenizer.encode("\($0)>") }
        let answers = try model.greedyContinuation(prompts, count: 4)
        let correct = try zip(words, answers).filter { word, answer in try tokenizer.decode(answer) == String(word.reversed()) }.count
        return Double(correct) / Double(words.count)
    }
}
