// Gradient checkpointing must change memory, never values: two copies of a model train side by side, one with it,
// and every loss, gradient norm, gradient and weight must agree bit for bit, the adapters' dropout seeds too.
import SwiftLoRA

/// Trains `steps` AdamW steps on two models `make` builds (adapters and training mode as it sets them), the second
/// with gradient checkpointing, on the fixed batch `tokens`. Returns what differs (empty: bit for bit the same).
public func gradientCheckpointingDifferences(tokens: [[Int]], steps: Int = 3,
                                             make: () throws -> any LanguageModel) throws -> [String] {
    let (plain, checkpointed) = (try make(), try make())
    checkpointed.gradientCheckpointing = true
    var options = TrainingOptions(steps: steps)
    options.learningRate = 1e-2  // large enough that every step changes the adapters visibly
    let trainers = try [plain, checkpointed].map { try Trainer(model: $0, data: TrainingData(fixedBatch: tokens), options: options) }
    var differences: [String] = []
    func bits(_ values: [Float]) -> [UInt32] { values.map(\.bitPattern) }
    for step in 1...steps {
        let (a, b) = (try trainers[0].trainStep(), try trainers[1].trainStep())
        if a.loss.bitPattern != b.loss.bitPattern { differences.append("step \(step): loss \(a.loss) vs \(b.loss)") }
        if a.gradientNorm.bitPattern != b.gradientNorm.bitPattern {
            differences.append("step \(step): gradient norm \(a.gradientNorm) vs \(b.gradientNorm)")
        }
        for (p, q) in zip(plain.trainableParameters, checkpointed.trainableParameters) {
            if bits(try p.gradient.toArray()) != bits(try q.gradient.toArray()) { differences.append("step \(step): gradient of \(p.name)") }
            if bits(try p.value.toArray()) != bits(try q.value.toArray()) { differences.append("step \(step): \(p.name) after the update") }
        }
    }
    let seeds = [plain, checkpointed].map { $0.loraLayers.map(\.layer.nextDropoutSeed) }
    if seeds[0] != seeds[1] { differences.append("the adapters' next dropout seeds differ") }
    if plain.trainableParameters.isEmpty { differences.append("nothing was trained") }
    return differences
}
