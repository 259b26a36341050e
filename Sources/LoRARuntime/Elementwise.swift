// Elementwise ops with a validated description: a bias added to every row, and y += alpha·x.

/// `y[row, :] += bias` for every row of `y` (its last axis has `bias.count` entries).
public struct BiasAdd: BackendOp {
    public var owner: any Backend { y.backend }
    public let bias: Tensor, y: Tensor
    public let rows: Int, cols: Int

    public init(bias: Tensor, y: Tensor) throws {
        try y.backend.requireOwned("addBias", bias, y)
        try requireFloat32("addBias", ("bias", bias), ("y", y))
        guard bias.rank == 1, y.shape.last == bias.count else {
            throw LoRAError.shapeMismatch("addBias: bias \(describe(bias.shape)) does not fit y \(describe(y.shape))")
        }
        (self.bias, self.y, cols) = (bias, y, bias.count)
        rows = y.count / cols
    }
}

/// `y += alpha·x` elementwise (x and y have the same element count). For SGD steps, residuals, scaling.
public struct Axpy: BackendOp {
    public var owner: any Backend { y.backend }
    public let alpha: Float
    public let x: Tensor, y: Tensor

    public init(alpha: Float, x: Tensor, y: Tensor) throws {
        try y.backend.requireOwned("axpy", x, y)
        try requireFloat32("axpy", ("x", x), ("y", y))
        guard x.count == y.count else {
            throw LoRAError.shapeMismatch("axpy: x \(describe(x.shape)) and y \(describe(y.shape)) differ in size")
        }
        guard alpha.isFinite else { throw LoRAError.invalidArgument("axpy: alpha \(alpha) must be finite") }
        (self.alpha, self.x, self.y) = (alpha, x, y)
    }
}

/// Inverted dropout: `y[i] = x[i] / (1 − p)` where element i is kept, 0 where dropped.
///
/// Whether element i is kept depends only on (`seed`, `indexOffset` + i): a 32-bit integer hash of both compared with
/// p·2³², the same on every device. So applying the op with the same seed to the output's gradient is its backward,
/// and a run repeats exactly. `indexOffset` places x inside a larger tensor the mask is defined over: a data-parallel
/// rank's rows get the elements of the whole batch's mask that one process would give them. `y` may be `x`.
public struct Dropout: BackendOp {
    public var owner: any Backend { x.backend }
    public let x: Tensor, y: Tensor
    public let probability: Float
    public let seed: UInt64
    /// The mask index of x's first element (indices wrap modulo 2³², as the hash reads them).
    public let indexOffset: UInt32
    /// Elements whose hash is below this are dropped: p·2³², rounded.
    public let threshold: UInt32
    /// 1 / (1 − p).
    public let keepScale: Float

    public init(x: Tensor, y: Tensor, probability: Float, seed: UInt64, indexOffset: UInt32 = 0) throws {
        try x.backend.requireOwned("dropout", x, y)
        try requireFloat32("dropout", ("x", x), ("y", y))
        guard x.count == y.count else {
            throw LoRAError.shapeMismatch("dropout: x \(describe(x.shape)) and y \(describe(y.shape)) differ in size")
        }
        guard probability >= 0, probability < 1 else {
            throw LoRAError.invalidArgument("dropout: probability \(probability) must lie in [0, 1)")
        }
        (self.x, self.y, self.probability, self.seed, self.indexOffset) = (x, y, probability, seed, indexOffset)
        threshold = UInt32(min(Double(UInt32.max), (Double(probability) * 4_294_967_296).rounded()))
        keepScale = 1 / (1 - probability)
    }

    /// The seed as the two 32-bit words the hash mixes in (the OpenCL kernel takes them as two `uint` arguments).
    @inlinable public static func seedWords(_ seed: UInt64) -> (low: UInt32, high: UInt32) {
        (UInt32(truncatingIfNeeded: seed), UInt32(truncatingIfNeeded: seed >> 32))
    }

    /// This op's seed as the hash's two words.
    public var seedWords: (low: UInt32, high: UInt32) { Dropout.seedWords(seed) }

    /// Whether an element with hash `h` is dropped: `h < threshold`.
    @inlinable public static func drops(_ h: UInt32, threshold: UInt32) -> Bool { h < threshold }

    /// The hash that decides element `index`: lowbias32 of the index mixed with the seed. The one Swift statement of
    /// the mask (the CPU's vector loop calls it 16 lanes at a time); Kernels/elementwise.cl's `dropout` is the only
    /// other copy, in OpenCL C.
    @inlinable public static func hash<V: SIMD>(_ index: V, seed: UInt64) -> V where V.Scalar == UInt32 {
        let (low, high) = seedWords(seed)
        var h = index &* 0x9E37_79B1 &+ V(repeating: low)
        h ^= V(repeating: high)
        h ^= h &>> 16
        h = h &* 0x7FEB_352D
        h ^= h &>> 15
        h = h &* 0x846C_A68B
        h ^= h &>> 16
        return h
    }

    /// The hash of one index: `hash(_:seed:)` on one lane.
    @inlinable public static func hash(_ index: UInt32, seed: UInt64) -> UInt32 {
        hash(SIMD2(repeating: index), seed: seed)[0]
    }
}

/// `destination[b][i, j] = source[b][i, j]` for a batch of `rows × cols` blocks, each operand addressed as a GEMM
/// operand is (`offset + b·batchStride + i·ld + j`): moving column blocks between matrices (a KV cache's rows).
public struct BlockCopy: BackendOp {
    public var owner: any Backend { destination.tensor.backend }
    public let source: GEMMOperand, destination: GEMMOperand
    public let rows: Int, cols: Int, batch: Int

    public init(rows: Int, cols: Int, batch: Int = 1, from source: GEMMOperand, to destination: GEMMOperand) throws {
        try destination.tensor.backend.requireOwned("blockCopy", source.tensor, destination.tensor)
        try requireFloat32("blockCopy", ("source", source.tensor), ("destination", destination.tensor))
        guard rows >= 1, cols >= 1, batch >= 1 else {
            throw LoRAError.invalidArgument("blockCopy: rows \(rows), cols \(cols), batch \(batch) must be ≥ 1")
        }
        for (name, x) in [("source", source), ("destination", destination)] {
            guard x.offset >= 0, x.ld >= cols, x.batchStride >= 0,
                  x.offset + (batch - 1) * x.batchStride + (rows - 1) * x.ld + cols <= x.tensor.count else {
                throw LoRAError.shapeMismatch("blockCopy: the \(name) blocks (\(rows)×\(cols), ld \(x.ld), offset \(x.offset), "
                    + "batch stride \(x.batchStride)) do not fit its tensor \(describe(x.tensor.shape))")
            }
        }
        guard source.tensor.storage !== destination.tensor.storage else {
            throw LoRAError.invalidArgument("blockCopy: source and destination must be different tensors")
        }
        (self.source, self.destination, self.rows, self.cols, self.batch) = (source, destination, rows, cols, batch)
    }
}
