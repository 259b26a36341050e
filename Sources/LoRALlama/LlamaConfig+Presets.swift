// Named shapes for benchmarks and tests (random weights; nothing is downloaded). Benchmarks/pytorch_train_bench.py
// builds the same shapes for PyTorch + PEFT.
extension LlamaConfig {
    /// SmolLM2-135M's shape: hidden 576, 30 layers, 9 heads with 3 kv heads, intermediate 1536, vocab 49152, tied
    /// embeddings, rope_theta 1e5, 2048 positions.
    public static let smolLM135M = try! LlamaConfig(
        family: .llama, vocabSize: 49152, hiddenSize: 576, intermediateSize: 1536, layers: 30, heads: 9, kvHeads: 3,
        maxPositions: 2048, rmsNormEpsilon: 1e-5, ropeTheta: 100_000, tieWordEmbeddings: true)

    /// A small Llama for quick runs: hidden 128, 2 layers, 4 heads with 2 kv heads, intermediate 352, vocab 256.
    public static let tiny = try! LlamaConfig(
        family: .llama, vocabSize: 256, hiddenSize: 128, intermediateSize: 352, layers: 2, heads: 4, kvHeads: 2,
        maxPositions: 128, rmsNormEpsilon: 1e-5)
}
