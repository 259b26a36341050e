// A KV cache: every layer's keys and values for the tokens so far, on the device, so each new token costs one
// position's forward instead of the whole sequence's. Per layer two `[batch·capacity, width]` tensors (width =
// kv heads × head dim, heads side by side); sequence b's position p is row b·capacity + p.
import LoRARuntime

/// Keys and values of every layer for up to `capacity` positions of `batch` sequences.
public final class KVCache {
    /// What a model's cache holds: its layer count and the width of one position's keys (and values).
    public struct Geometry: Sendable, Equatable {
        public let layers: Int, width: Int
        public init(layers: Int, width: Int) { (self.layers, self.width) = (layers, width) }
    }

    public let batch: Int, capacity: Int
    public let geometry: Geometry
    /// Positions filled so far.
    public private(set) var length = 0
    /// Per layer: keys and values, each `[batch·capacity, width]`.
    public let layers: [(k: Tensor, v: Tensor)]

    /// A cache for `model`; `capacity` defaults to the model's positions.
    public init(model: any LanguageModel, batch: Int = 1, capacity: Int? = nil) throws {
        let capacity = capacity ?? model.maxPositions
        guard batch >= 1, capacity >= 1, capacity <= model.maxPositions else {
            throw LoRAError.invalidArgument("KV cache: batch \(batch) and capacity \(capacity) must be ≥ 1, capacity ≤ \(model.maxPositions) positions")
        }
        (self.batch, self.capacity, geometry) = (batch, capacity, model.cacheGeometry)
        let backend = model.backend, g = model.cacheGeometry
        layers = try (0..<g.layers).map { _ in
            (try backend.empty([batch * capacity, g.width]), try backend.empty([batch * capacity, g.width]))
        }
    }

    /// A zero-filled cache whose capacity may exceed the model's positions: batched generation's shared cache, where
    /// rows of different lengths sit right-aligned and the columns before a row's start must hold finite values.
    init(backend: any Backend, geometry g: KVCache.Geometry, batch: Int, capacity: Int) throws {
        precondition(batch >= 1 && capacity >= 1, "KV cache: batch \(batch) and capacity \(capacity) must be ≥ 1")
        (self.batch, self.capacity, geometry) = (batch, capacity, g)
        layers = try (0..<g.layers).map { _ in
            (try backend.zeros([batch * capacity, g.width]), try backend.zeros([batch * capacity, g.width]))
        }
    }

    /// Throws unless `count` more positions of `sequences` sequences fit.
    public func checkRoom(sequences: Int, adding count: Int) throws {
        guard sequences == batch else { throw LoRAError.shapeMismatch("KV cache: \(sequences) sequences for a cache of \(batch)") }
        guard length + count <= capacity else {
            throw LoRAError.invalidArgument("KV cache: \(length) cached + \(count) new positions exceed its \(capacity)")
        }
    }

    /// Records that a forward appended `count` positions to every layer.
    public func advance(by count: Int) { length += count }

    /// Where layer `layer`'s keys (part 0) or values (part 1) for this step go: the `[T, width]` block after the
    /// cached positions of every sequence.
    public func destination(layer: Int, values: Bool) -> GEMMOperand {
        let t = values ? layers[layer].v : layers[layer].k
        return GEMMOperand(t, offset: length * geometry.width, ld: geometry.width, batchStride: capacity * geometry.width)
    }

    /// Layer `layer`'s keys or values as attention operands over all cached positions.
    public func heads(layer: Int, values: Bool, headDim: Int) -> HeadOperand {
        HeadOperand(values ? layers[layer].v : layers[layer].k, ld: geometry.width,
                    sequenceStride: capacity * geometry.width, headStride: headDim)
    }
}
