// Optimizers over a model's trainable tensors: AdamW (torch.optim.AdamW, one fused op per tensor) and SGD, plus
// the global gradient norm that clipping needs (a sum of squares per tensor, added up on the device, one read).
import LoRANN
import LoRARuntime

/// AdamW or SGD over a fixed list of parameters, with its state (moments, step count).
public final class Optimizer {
    public enum Kind: String, Sendable, CaseIterable { case adamw, sgd }

    public let kind: Kind
    public let parameters: [TrainableParameter]
    public var beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8, weightDecay: Float = 0.01
    /// Updates taken so far (AdamW's t after the last one).
    public private(set) var step = 0
    /// AdamW's first and second moments, one pair per parameter (empty for SGD).
    public let moments: [(m: Tensor, v: Tensor)]
    let backend: any Backend

    public init(_ kind: Kind, parameters: [TrainableParameter]) throws {
        guard let first = parameters.first else { throw LoRAError.invalidArgument("optimizer: no trainable parameters") }
        let backend = first.value.backend
        (self.kind, self.parameters, self.backend) = (kind, parameters, backend)
        moments = kind == .adamw ? try parameters.map { (try backend.zeros($0.value.shape), try backend.zeros($0.value.shape)) } : []
    }

    /// √(Σ over every gradient of g²): the norm gradient clipping compares with its limit.
    public func gradientNorm() throws -> Float {
        let total = try backend.zeros([1])
        for p in parameters { try backend.reduce(Reduction(.sumOfSquares, of: p.gradient, into: total, accumulate: true)) }
        return try total.toArray()[0].squareRoot()
    }

    /// One update with learning rate `lr`; gradients are multiplied by `gradientScale` first (clipping).
    public func update(learningRate lr: Float, gradientScale: Float = 1) throws {
        step += 1
        for (index, p) in parameters.enumerated() {
            switch kind {
            case .adamw:
                try backend.adamW(AdamW(parameters: p.value, gradients: p.gradient, firstMoment: moments[index].m,
                                        secondMoment: moments[index].v, learningRate: lr, beta1: beta1, beta2: beta2,
                                        epsilon: epsilon, weightDecay: weightDecay, step: step, gradientScale: gradientScale))
            case .sgd:
                // torch.optim.SGD with weight decay: g + wd·p, then p −= lr·(that).
                if weightDecay != 0 { try backend.axpy(Axpy(alpha: -lr * weightDecay, x: p.value, y: p.value)) }
                try backend.axpy(Axpy(alpha: -lr * gradientScale, x: p.gradient, y: p.value))
            }
        }
    }

    /// Restores the step count (a checkpoint's); the moments are restored by writing their tensors.
    public func restore(step: Int) { self.step = step }
}
