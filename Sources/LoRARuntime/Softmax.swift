// Softmax over the last axis, with an optional scale and causal mask (optionally a sliding window), and its gradient.
// Layout: x is [..., cols], rows = count / cols. For attention, x is [batch, heads, Tq, Tk].
// Packed rows (several examples in one sequence, no example attending to another): an int32 tensor of segment starts
// gives each causal row the first key it may see, which makes the mask block-diagonal causal.

/// `y = softmax(scale·x)` over the last axis.
///
/// With `causal`, x is `[..., Tq, Tk]` and query row `i` (counted within its `Tq` block) sees keys
/// `j ≤ i + (Tk − Tq)`; so with `Tq == Tk` it is the usual lower-triangular mask, and with a KV cache
/// (`Tk > Tq`) the new queries see all cached keys. With a `window` W as well, the row sees only the last W of those
/// keys, `j > i + (Tk − Tq) − W` (Mistral's sliding window; see `AttentionShape`).
/// Masked entries of y are 0; a row that sees no key is all 0. `y` may be `x` (in place).
public struct Softmax: BackendOp {
    public var owner: any Backend { x.backend }
    public let x: Tensor, y: Tensor
    public let scale: Float
    public let causal: Bool
    /// Rows and their length (the last axis).
    public let rows: Int, cols: Int
    /// Rows per causal block (`Tq`); 1 when not causal.
    public let queryLength: Int
    /// Keys a causal row sees, counting its own (nil: all earlier ones).
    public let window: Int?
    /// Each causal row's first visible key, for packed rows (nil: key 0).
    public let segmentStarts: SegmentStarts?

    public init(x: Tensor, y: Tensor, scale: Float = 1, causal: Bool = false, window: Int? = nil,
                segmentStarts: Tensor? = nil) throws {
        try x.backend.requireOwned("softmax", x, y, segmentStarts)
        try requireFloat32("softmax", ("x", x), ("y", y))
        try Softmax.check("softmax", window: window, causal: causal)
        guard x.shape == y.shape else {
            throw LoRAError.shapeMismatch("softmax: x is \(describe(x.shape)) but y is \(describe(y.shape))")
        }
        guard scale.isFinite else { throw LoRAError.invalidArgument("softmax: scale \(scale) must be finite") }
        if causal && x.rank < 2 {
            throw LoRAError.shapeMismatch("softmax: a causal mask needs x as [..., Tq, Tk], got \(describe(x.shape))")
        }
        (self.x, self.y, self.scale, self.causal, self.window) = (x, y, scale, causal, window)
        cols = x.shape[x.rank - 1]
        rows = x.count / cols
        queryLength = causal ? x.shape[x.rank - 2] : 1
        let (rows, queryLength) = (rows, queryLength)
        self.segmentStarts = try segmentStarts.map {
            try SegmentStarts("softmax", $0, causal: causal, rows: rows, queryLength: queryLength)
        }
    }

    /// Keys visible to `row` (all of them when not causal) without the window: entries `0..<visibleCount`.
    @inlinable public func visibleCount(row: Int) -> Int {
        Softmax.visibleCount(row: row, cols: cols, queryLength: causal ? queryLength : 0)
    }

    /// Keys visible to `row`, the window included.
    @inlinable public func visibleKeys(row: Int) -> Range<Int> {
        Softmax.visibleKeys(visibleCount: visibleCount(row: row), window: window)
    }

    /// The last `window` of the first `visibleCount` keys (all of them without a window).
    @inlinable static func visibleKeys(visibleCount: Int, window: Int?) -> Range<Int> {
        (window.map { max(0, visibleCount - $0) } ?? 0)..<visibleCount
    }

    static func check(_ op: String, window: Int?, causal: Bool) throws {
        guard let window else { return }
        guard causal, window >= 1 else {
            throw LoRAError.invalidArgument("\(op): a window (\(window)) must be ≥ 1 and needs the causal mask")
        }
    }

    /// Keys visible to `row` of `[..., Tq, Tk]` rows under the causal mask (queryLength = Tq; 0: no mask): the one
    /// statement of the rule, which attention uses too (Kernels/softmax.cl's `visible_count` is the OpenCL C copy).
    @inlinable static func visibleCount(row: Int, cols: Int, queryLength: Int) -> Int {
        guard queryLength > 0 else { return cols }
        return max(0, min(cols, row % queryLength + (cols - queryLength) + 1))
    }
}

/// Gradient of `Softmax`: `dx = scale · y ⊙ (dy − Σⱼ dyⱼ·yⱼ)` per row, written (not accumulated) into `dx`.
///
/// Needs only the forward output `y`: masked entries have `y = 0`, so their gradient is 0 without the mask.
/// With `causal` (and `window`: the forward's mask) dy's masked entries are not read at all (a GEMM with a `.lowerC`
/// triangle leaves them unspecified) and dx's are 0. `dx` may be `dy` (in place).
public struct SoftmaxBackward: BackendOp {
    public var owner: any Backend { y.backend }
    public let y: Tensor, dy: Tensor, dx: Tensor
    public let scale: Float
    public let causal: Bool
    public let rows: Int, cols: Int
    /// Rows per causal block (`Tq`); 1 when not causal.
    public let queryLength: Int
    /// The forward's window.
    public let window: Int?
    /// The forward's segment starts.
    public let segmentStarts: SegmentStarts?

    public init(y: Tensor, dy: Tensor, dx: Tensor, scale: Float = 1, causal: Bool = false, window: Int? = nil,
                segmentStarts: Tensor? = nil) throws {
        try y.backend.requireOwned("softmaxBackward", y, dy, dx, segmentStarts)
        try requireFloat32("softmaxBackward", ("y", y), ("dy", dy), ("dx", dx))
        try Softmax.check("softmaxBackward", window: window, causal: causal)
        guard y.shape == dy.shape, y.shape == dx.shape else {
            throw LoRAError.shapeMismatch(
                "softmaxBackward: y \(describe(y.shape)), dy \(describe(dy.shape)), dx \(describe(dx.shape)) must match")
        }
        guard scale.isFinite else { throw LoRAError.invalidArgument("softmaxBackward: scale \(scale) must be finite") }
        if causal && y.rank < 2 {
            throw LoRAError.shapeMismatch("softmaxBackward: a causal mask needs y as [..., Tq, Tk], got \(describe(y.shape))")
        }
        (self.y, self.dy, self.dx, self.scale, self.causal, self.window) = (y, dy, dx, scale, causal, window)
        cols = y.shape[y.rank - 1]
        rows = y.count / cols
        queryLength = causal ? y.shape[y.rank - 2] : 1
        let (rows, queryLength) = (rows, queryLength)
        self.segmentStarts = try segmentStarts.map {
            try SegmentStarts("softmaxBackward", $0, causal: causal, rows: rows, queryLength: queryLength)
        }
    }

    /// Entries of `row` that the causal mask leaves visible, without the window: `0..<visibleCount`.
    @inlinable public func visibleCount(row: Int) -> Int {
        Softmax.visibleCount(row: row, cols: cols, queryLength: causal ? queryLength : 0)
    }

    /// Entries of `row` that the mask leaves visible, the window included.
    @inlinable public func visibleKeys(row: Int) -> Range<Int> {
        Softmax.visibleKeys(visibleCount: visibleCount(row: row), window: window)
    }
}

/// Packed rows' segment starts for a causal softmax over `[..., Tq, Tk]` rows: an int32 tensor `[S, Tq]` holding, for
/// query i of sequence s, the first key it may see (the first token of its example, in key coordinates). The rows'
/// `blocks = rows / Tq` blocks of Tq split evenly over the S sequences: with x `[B, H, Tq, Tk]` and S = B, every head
/// of sequence b reads row b. A row then sees keys `max(start, its causal/window range's start)...` up to its causal
/// end: block-diagonal causal attention when each example's tokens share a start. Starts are data on the device and
/// are not checked: one past the row's last visible key leaves it none (all 0), a negative one changes nothing.
public struct SegmentStarts: Sendable {
    public let tensor: Tensor
    /// Tq, and the `[Tq, Tk]` blocks that share one sequence's starts (heads).
    public let queryLength: Int, blocksPerSequence: Int

    init(_ op: String, _ tensor: Tensor, causal: Bool, rows: Int, queryLength: Int) throws {
        try tensor.requireDType([.int32], op: op, operand: "segmentStarts")
        let blocks = rows / queryLength
        guard causal, tensor.count % queryLength == 0, tensor.count > 0, blocks % (tensor.count / queryLength) == 0 else {
            throw LoRAError.shapeMismatch("\(op): segment starts \(describe(tensor.shape)) need the causal mask and one row of "
                + "\(queryLength) per sequence, the sequences dividing \(blocks) blocks")
        }
        (self.tensor, self.queryLength) = (tensor, queryLength)
        blocksPerSequence = blocks / (tensor.count / queryLength)
    }

    /// Where softmax row r's start sits in `tensor`.
    @inlinable public func index(row r: Int) -> Int {
        (r / queryLength / blocksPerSequence) * queryLength + r % queryLength
    }

    /// `keys` starting no earlier than `start` (empty from its end when start lies past it).
    @inlinable public static func keys(_ keys: Range<Int>, from start: Int) -> Range<Int> {
        max(keys.lowerBound, min(start, keys.upperBound))..<keys.upperBound
    }
}
