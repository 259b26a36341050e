// Uses swift-lora as a backend: picks the best device, runs a LoRA layer forward and backward on it,
// and checks the result against the same layer on the CPU.
import Foundation
import SwiftLoRA

let selection = try Devices.select()
let backend = selection.backend
print("consumer: running on \(backend.name) (\(backend.deviceDescription)): \(selection.reason)")

func run(on backend: any Backend) throws -> (y: [Float], gradA: [Float], gradB: [Float]) {
    var random = SeededGenerator(seed: 7)
    let weight = try backend.upload(random.uniform(count: 48 * 64, bound: 0.125), shape: [48, 64])
    let layer = try LoRALinear(weight: weight, rank: 4, alpha: 8, seed: 1)
    try backend.copy(backend.upload(random.uniform(count: 48 * 4, bound: 0.5), shape: [48, 4]), to: layer.loraB)
    let x = try backend.upload(random.uniform(count: 10 * 64, bound: 1), shape: [10, 64])
    let y = try layer.forward(x)
    _ = try layer.backward(backend.upload([Float](repeating: 1, count: 10 * 48), shape: [10, 48]))
    return (try y.toArray(), try layer.gradA.toArray(), try layer.gradB.toArray())
}

let here = try run(on: backend)
let reference = try run(on: CPUBackend.shared)
let gap = zip(here.y + here.gradA + here.gradB, reference.y + reference.gradA + reference.gradB)
    .map { abs($0 - $1) / (1 + abs($1)) }.max() ?? .infinity
print("consumer: LoRA forward/backward on \(backend.name), max relative gap to the CPU \(gap)")
guard gap < 1e-4, here.gradA.contains(where: { $0 != 0 }) else {
    print("consumer: FAILED")
    exit(1)
}
print("consumer: OK")
