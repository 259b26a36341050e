// Whole training runs: a few LoRA steps (forward, backward, gradient clipping, AdamW, adapter dropout) of tiny
// random-weight models, GPT-2 and Llama (and Llama with its linears in NF4, QLoRA), on the device and on the CPU from
// the same seeds, comparing each step's loss and gradient norm.
// Bound: the loss is a chain of sums (per layer: the projections over the width, attention over the head width and the
// tokens, the MLP over its hidden width; then the output layer and the vocabulary), each within 2γ of the other
// device's; backward walks the chain again for the gradient. Each step then starts from parameters that already
// differ by what the earlier steps left, so the bound grows with the step: 2γ_{2n}·step, with n the chain's length.
import Foundation
import SwiftLoRA

struct TrainingRun: Sendable {
    let name: String
    /// Σ of the sums' lengths along the forward (see the file's header).
    let chainLength: Int
    let make: @Sendable (any Backend) throws -> any LanguageModel

    static let batch = 2, sequence = 33, steps = 4

    /// (loss, gradient norm) per step on `backend`.
    func run(on backend: any Backend) throws -> (losses: [Float], norms: [Float]) {
        let model = try make(backend)
        try model.applyLoRA(LoRAConfig(rank: 8, alpha: 16, targets: model.defaultLoRATargets, dropout: 0.1), seed: 2)
        var generator = SeededGenerator(seed: 3)
        let tokens = (0..<Self.batch).map { _ in (0..<Self.sequence).map { _ in Int(generator.next() % UInt64(model.vocabularySize)) } }
        var options = TrainingOptions(steps: Self.steps)
        (options.learningRate, options.maxGradNorm) = (1e-2, 1)
        let trainer = try Trainer(model: model, data: try TrainingData(fixedBatch: tokens), options: options)
        var (losses, norms): ([Float], [Float]) = ([], [])
        for _ in 0..<Self.steps {
            let record = try trainer.trainStep()
            losses.append(record.loss)
            norms.append(record.gradientNorm)
        }
        return (losses, norms)
    }
}

extension Selftest {
    /// Per layer, for width C, MLP width I, head width D and T tokens: q/k/v over C, scores over D, P·V over T, the
    /// output projection over C, the MLP's up over C and down over I; then the output layer over C and the
    /// vocabulary V.
    static func chainLength(layers: Int, width: Int, mlp: Int, headWidth: Int, vocabulary: Int) -> Int {
        layers * (3 * width + headWidth + TrainingRun.sequence + mlp) + width + vocabulary
    }

    static let trainingRuns = [
        TrainingRun(name: "train.gpt2-tiny", chainLength: chainLength(layers: 2, width: 128, mlp: 512, headWidth: 32, vocabulary: 256)) {
            try GPT2Model(config: .tiny, seed: 1, backend: $0)
        },
        TrainingRun(name: "train.llama-tiny", chainLength: chainLength(layers: 2, width: 128, mlp: 352, headWidth: 32, vocabulary: 256)) {
            try LlamaModel(config: .tiny, seed: 1, backend: $0)
        },
        TrainingRun(name: "train.llama-tiny-nf4", chainLength: chainLength(layers: 2, width: 128, mlp: 352, headWidth: 32, vocabulary: 256)) {
            try LlamaModel(config: .tiny, seed: 1, backend: $0, options: ModelLoadOptions(quantization: NF4Options()))
        },
    ]

    static var trainingChecks: [Check] {
        trainingRuns.map { run in
            Check(name: run.name) { s in
                let (device, cpu) = try s.both { try run.run(on: $0) }
                var comparisons: [Comparison] = []
                for step in 0..<TrainingRun.steps {
                    let bound = sumBound(2 * run.chainLength) * Double(step + 1)
                    let label = "step \(step + 1) of \(TrainingRun.steps), batch \(TrainingRun.batch) × \(TrainingRun.sequence)"
                    // Relative to the value itself: a loss and a norm are one number each.
                    comparisons.append(Comparison.measure([device.losses[step]], [cpu.losses[step]], tolerance: bound, label: label + " loss"))
                    comparisons.append(Comparison.measure([device.norms[step]], [cpu.norms[step]], tolerance: bound,
                                                          label: label + " gradient norm"))
                }
                return .compared(comparisons)
            }
        }
    }
}
