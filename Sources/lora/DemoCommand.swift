// `lora demo`: a single LoRA layer learns a low-rank change to a frozen linear layer.
// A teacher layer W* = W0 + ΔW (ΔW of rank 4) produces targets; a LoRALinear on the frozen W0 fits them with
// SGD on A and B only. It then merges the adapter and checks the merged layer gives the same outputs.
import ArgumentParser
import Foundation
import SwiftLoRA

struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo", abstract: "Fit a LoRA adapter to a low-rank change of a frozen layer, then merge it.")

    @OptionGroup var options: DeviceOptions
    @Option(help: "Input and output width of the layer.") var width = 256
    @Option(help: "Rows per batch.") var rows = 512
    @Option(help: "LoRA rank r.") var rank = 8
    @Option(help: "LoRA alpha (scale alpha/r).") var alpha: Float = 16
    @Option(help: "SGD steps.") var steps = 300
    @Option(help: "SGD learning rate.") var lr: Float = 0.5
    @Option(help: "Random seed.") var seed: UInt64 = 42

    func validate() throws {
        guard width >= 4, rows >= 1, steps >= 1, lr > 0 else {
            throw ValidationError("--width must be ≥ 4, --rows and --steps ≥ 1, --lr > 0")
        }
    }

    func run() throws {
        let backend = try options.select()
        let task = try DemoTask(backend: backend, width: width, rows: rows, seed: seed)
        let layer = try LoRALinear(weight: task.baseWeight, rank: rank, alpha: alpha, seed: seed)
        let trainable = layer.loraA.count + layer.loraB.count
        print("layer \(width)×\(width), LoRA r=\(rank) alpha=\(alpha): \(trainable) trainable of \(trainable + width * width) "
              + String(format: "parameters (%.2f%%)", 100 * Double(trainable) / Double(trainable + width * width)))

        let start = Date()
        let initial = try task.loss(layer)
        let progress = Progress(total: steps)
        var loss = initial
        for step in 1...steps {
            loss = try task.sgdStep(layer, lr: lr)
            guard loss.isFinite else { throw ValidationError("loss became \(loss) at step \(step); lower --lr") }
            progress.update(step: step, message: String(format: "loss %.4g", loss))
        }
        progress.finish()
        let seconds = Date().timeIntervalSince(start)
        print(String(format: "mean squared error: %.4g at step 0 → %.4g after %d steps (%.3g%% of the start), %.2f ms/step",
                     initial, loss, steps, 100 * loss / initial, 1000 * seconds / Double(steps)))

        let unmerged = try layer.forward(task.inputs).toArray()
        try layer.merge()
        let merged = try layer.forward(task.inputs).toArray()
        let gap = zip(merged, unmerged).map { abs($0 - $1) }.max() ?? 0
        print(String(format: "merged W0 + (alpha/r)·B·A: max |merged − unmerged| = %.2e", gap))
        try layer.unmerge()
        if let cl = backend as? OpenCLBackend { print("OpenCL GEMM engine: \(try cl.gemmEngineChoice())") }
    }
}

/// Inputs, a frozen base weight, and targets from a teacher that differs from the base by a rank-4 update.
struct DemoTask {
    let backend: any Backend
    let inputs: Tensor, targets: Tensor, baseWeight: Tensor

    init(backend: any Backend, width: Int, rows: Int, seed: UInt64) throws {
        var random = SeededGenerator(seed: seed)
        let bound = 1 / Float(width).squareRoot()
        self.backend = backend
        baseWeight = try backend.upload(random.uniform(count: width * width, bound: bound), shape: [width, width])
        inputs = try backend.upload(random.normal(count: rows * width, standardDeviation: 1), shape: [rows, width])
        // Teacher: W* = W0 + U·V with U [width, 4], V [4, width].
        let u = try backend.upload(random.normal(count: width * 4, standardDeviation: 0.5 * bound), shape: [width, 4])
        let v = try backend.upload(random.normal(count: 4 * width, standardDeviation: 1), shape: [4, width])
        let teacher = try backend.empty([width, width])
        try backend.copy(baseWeight, to: teacher)
        try backend.gemm(GEMM(a: u, b: v, c: teacher, beta: 1))
        targets = try backend.matmul(inputs, teacher, transposeB: true)
    }

    /// Mean squared error of the layer's output against the targets.
    func loss(_ layer: LoRALinear) throws -> Float {
        let (_, loss) = try residual(layer)
        return loss
    }

    /// One SGD step on A and B; returns the loss before the step.
    func sgdStep(_ layer: LoRALinear, lr: Float) throws -> Float {
        let (diff, loss) = try residual(layer)
        // d(mean (y − t)²)/dy = 2(y − t)/count
        let dy = try backend.zeros(diff.shape)
        try backend.axpy(Axpy(alpha: 2 / Float(diff.count), x: diff, y: dy))
        try layer.zeroGradients()
        _ = try layer.backward(dy)
        for p in layer.parameters { try backend.axpy(Axpy(alpha: -lr, x: p.gradient, y: p.value)) }
        return loss
    }

    /// y − t for the current layer, and its mean square: the only value read back per step, reduced on the
    /// device as the 1×1 GEMM `d·dᵀ` over the flattened residual d.
    private func residual(_ layer: LoRALinear) throws -> (Tensor, Float) {
        let y = try layer.forward(inputs)
        try backend.axpy(Axpy(alpha: -1, x: targets, y: y))
        let count = y.count
        let sum = try backend.empty([1, 1])
        try backend.gemm(GEMM(m: 1, n: 1, k: count, alpha: 1 / Float(count), a: GEMMOperand(y, ld: count),
                              b: GEMMOperand(y, ld: count), transposeB: true, c: GEMMOperand(sum, ld: 1)))
        return (y, try sum.toArray()[0])
    }
}
