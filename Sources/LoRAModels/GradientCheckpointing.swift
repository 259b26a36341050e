// Gradient checkpointing (activation recomputation, Chen et al. 2016; transformers' `gradient_checkpointing_enable`):
// a training forward keeps only each transformer block's input, and each block's backward first runs the block's
// forward again from that input. Saved activations drop from every block's to one block's plus every block's input
// `[N, C]`, for about one more forward per step. The recomputation gives the same values bit for bit (the same ops
// on the same input), and each adapter's dropout replays the mask of the original forward: its seed is kept here.
import LoRANN
import LoRARuntime

/// What a checkpointed block keeps between its forward and its backward: its input and the dropout seeds its
/// adapters were about to use.
public struct BlockCheckpoint {
    /// The block's input `[N, C]`.
    public let input: Tensor
    /// Per module, its adapter's `nextDropoutSeed` before the block's forward (nil: no adapter).
    private let seeds: [UInt64?]

    /// Records the seeds `modules`' adapters will use in the forward about to run from `input`.
    public init(input: Tensor, modules: [LinearModule]) {
        self.input = input
        seeds = modules.map { $0.lora?.nextDropoutSeed }
    }

    /// Runs `forward` (the block's forward from `input`, saving what its backward needs) with each adapter's dropout
    /// seed as it was in the original forward, then puts the seeds back as they are now, so later steps draw the
    /// masks they would have drawn without checkpointing.
    public func replay<T>(modules: [LinearModule], _ forward: (Tensor) throws -> T) rethrows -> T {
        precondition(modules.count == seeds.count, "BlockCheckpoint: \(modules.count) modules for \(seeds.count) recorded seeds")
        let current = modules.map { $0.lora?.nextDropoutSeed }
        func restore(_ list: [UInt64?]) {
            for (module, seed) in zip(modules, list) { if let seed, let lora = module.lora { lora.nextDropoutSeed = seed } }
        }
        restore(seeds)
        defer { restore(current) }
        return try forward(input)
    }
}
