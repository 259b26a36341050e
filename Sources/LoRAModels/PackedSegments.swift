// Packed rows (`lora train --packing`): several examples concatenated in one row of T tokens, so short examples do
// not waste a row each. Each example must behave as if it ran alone: its tokens attend only to its own earlier
// tokens (block-diagonal causal attention, the attention op's segment starts) at positions restarting at 0 (RoPE's
// per-row positions, GPT-2's position-embedding ids), and no example's last token is scored against the next
// example's first (`LanguageModel.loss` drops those targets, as HF's DataCollatorWithFlattening does with labels).
// Layout: B rows; row b holds examples of `lengths[b]` tokens in order, summing to T (a padded row's padding is an
// example of its own, with no trained labels).
import LoRARuntime

/// Where packed rows' examples begin and end.
public struct PackedSegments: Sendable, Equatable {
    /// Per row, its examples' lengths in order (each ≥ 1, summing to the row's length).
    public let lengths: [[Int]]

    public init(_ lengths: [[Int]]) { self.lengths = lengths }

    /// One example per row: packing that changes nothing.
    public static func unpacked(batch: Int, length: Int) -> PackedSegments {
        PackedSegments(Array(repeating: [length], count: batch))
    }

    /// Throws unless there is one entry per row and every row's lengths are ≥ 1 and sum to `length`.
    public func check(batch: Int, length: Int, model: String) throws {
        guard lengths.count == batch else {
            throw LoRAError.shapeMismatch("\(model): segments for \(lengths.count) rows, but the batch has \(batch)")
        }
        for (row, parts) in lengths.enumerated() where parts.contains(where: { $0 < 1 }) || parts.reduce(0, +) != length {
            throw LoRAError.invalidArgument("\(model): row \(row)'s examples \(parts) must each be ≥ 1 token and fill its \(length)")
        }
    }

    /// Per token of the flattened `[B·T]` rows, its position within its example (0 at each example's first token).
    public var positions: [Int] { lengths.flatMap { $0.flatMap { 0..<$0 } } }

    /// Per token, the index within its row of its example's first token: the first key it may attend to.
    public var starts: [Int] {
        lengths.flatMap { parts in
            var first = 0
            return parts.flatMap { length in
                defer { first += length }
                return Array(repeating: first, count: length)
            }
        }
    }

    /// Per token, whether it is its example's last but not its row's: its next-token target is another example's.
    public var endsExample: [Bool] {
        lengths.flatMap { parts in
            parts.enumerated().flatMap { index, length in
                (0..<length).map { $0 == length - 1 && index < parts.count - 1 }
            }
        }
    }

    /// The segment starts `[B, T]` and positions `[B·T]` as int32 tensors on `backend`, what the models' ops read.
    public func upload(to backend: any Backend, batch: Int, length: Int) throws -> DeviceSegments {
        DeviceSegments(starts: try backend.upload(starts.map { Int32($0) }, shape: [batch, length]),
                       positions: try backend.upload(positions.map { Int32($0) }, shape: [batch * length]))
    }
}

/// Packed rows' segment starts (`[B, T]`, the attention op's) and positions (`[B·T]`, RoPE's or GPT-2's position
/// ids) on a device; a model keeps them for backward and for recomputing a checkpointed block.
public struct DeviceSegments {
    public let starts: Tensor, positions: Tensor
}
