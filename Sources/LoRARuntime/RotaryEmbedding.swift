// Rotary position embedding (RoPE) in Hugging Face's rotate-half layout, as Llama, Mistral and Qwen apply it to
// queries and keys: each head's vector splits into halves (x₁, x₂) = (x[..<D/2], x[D/2...]), and pair i turns by
// the angle of its position: `y = x·cos + rotate_half(x)·sin` with `rotate_half(x) = (−x₂, x₁)`.
// Layout: x [B·T, heads·headDim], row r is sequence r / T at position start + r % T, or at positions[r] where an int32
// tensor of positions is given (packed rows, whose positions restart at each example); tables [positions, D/2].

/// Rotates every head of every row by its position's angles, from tables the caller builds (so any frequency
/// schedule — plain, Llama 3's, linear or dynamic scaling — and any attention scaling folded into the tables works):
/// for `i < D/2`, with `c = cos[pos, i]`, `s = sin[pos, i]`,
/// ```
/// y[i]       = x[i]·c − x[i + D/2]·s
/// y[i + D/2] = x[i + D/2]·c + x[i]·s
/// ```
/// `inverse` turns by the negative angle (swap the signs of the `s` terms): the gradient, dx from dy, since the
/// rotation is orthogonal. `output` may be `input` (in place).
public struct RoPE: BackendOp {
    public var owner: any Backend { input.backend }
    public let input: Tensor, output: Tensor
    /// `[maxPositions, headDim / 2]` each.
    public let cos: Tensor, sin: Tensor
    public let heads: Int, headDim: Int, sequenceLength: Int, start: Int
    public let inverse: Bool
    /// `B·T`: rows of `heads·headDim`.
    public let rows: Int
    /// int32 `[B·T]`: each row's position, instead of `start + r % T` (packed rows). A position outside the tables
    /// writes NaN over the row's heads (checked on the device, as the embedding lookup does), never a read outside.
    public let positions: Tensor?
    /// Rows of the cos and sin tables.
    public let tablePositions: Int

    public init(input: Tensor, output: Tensor, heads: Int, headDim: Int, sequenceLength: Int, start: Int,
                cos: Tensor, sin: Tensor, inverse: Bool = false, positions: Tensor? = nil) throws {
        try input.backend.requireOwned("rope", input, output, cos, sin, positions)
        try requireFloat32("rope", ("input", input), ("output", output), ("cos", cos), ("sin", sin))
        guard heads >= 1, headDim >= 2, headDim % 2 == 0, sequenceLength >= 1, start >= 0 else {
            throw LoRAError.invalidArgument("rope: heads \(heads), headDim \(headDim) (even, ≥ 2), sequenceLength "
                + "\(sequenceLength) (≥ 1) and start \(start) (≥ 0) are out of range")
        }
        let width = heads * headDim
        guard input.count % width == 0, (input.count / width) % sequenceLength == 0 else {
            throw LoRAError.shapeMismatch("rope: input \(describe(input.shape)) is not rows of \(heads)×\(headDim) "
                + "in sequences of \(sequenceLength)")
        }
        guard output.shape == input.shape else {
            throw LoRAError.shapeMismatch("rope: output \(describe(output.shape)) differs from input \(describe(input.shape))")
        }
        let half = headDim / 2
        guard cos.shape == sin.shape, cos.shape[cos.rank - 1] == half else {
            throw LoRAError.shapeMismatch("rope: cos \(describe(cos.shape)) and sin \(describe(sin.shape)) must both be "
                + "[positions, \(half)]")
        }
        let tableRows = cos.count / half
        guard start + sequenceLength <= tableRows else {
            throw LoRAError.shapeMismatch("rope: positions \(start)..<\(start + sequenceLength) need tables of at least "
                + "\(start + sequenceLength) rows; cos and sin have \(tableRows)")
        }
        if let positions {
            try positions.requireDType([.int32], op: "rope", operand: "positions")
            guard positions.count == input.count / width else {
                throw LoRAError.shapeMismatch("rope: \(positions.count) positions for \(input.count / width) rows")
            }
        }
        // output may be input; it may not be a table.
        try requireDisjoint("rope", outputs: [("output", output)], inputs: [("cos", cos), ("sin", sin), ("positions", positions)])
        (self.input, self.output, self.cos, self.sin, self.inverse) = (input, output, cos, sin, inverse)
        (self.heads, self.headDim, self.sequenceLength, self.start) = (heads, headDim, sequenceLength, start)
        (self.positions, tablePositions) = (positions, tableRows)
        rows = input.count / width
    }

    /// The position of row `r` without a positions tensor.
    @inlinable public func position(row r: Int) -> Int { start + r % sequenceLength }
}
