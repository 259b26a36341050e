import Foundation

// The fused AdamW update, with torch.optim.AdamW's semantics and operation order (decoupled weight decay,
// bias correction, eps added outside the square root), so a run here follows PyTorch's to float rounding.

/// One AdamW step on a parameter tensor, in place:
///
///     g  = gradientScale · grad                (gradient clipping folds into the scale)
///     p *= 1 − lr·weightDecay
///     m  = m + (1 − β₁)·(g − m)                (torch's lerp)
///     v  = β₂·v + (1 − β₂)·g²
///     p −= (lr / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + eps)
///
/// `step` is t, 1-based. `m` and `v` start at zero and are the optimizer state a checkpoint saves.
public struct AdamW: BackendOp {
    public var owner: any Backend { parameters.backend }
    public let parameters: Tensor, gradients: Tensor, firstMoment: Tensor, secondMoment: Tensor
    public let learningRate: Float, beta1: Float, beta2: Float, epsilon: Float, weightDecay: Float
    public let step: Int
    public let gradientScale: Float
    /// The scalars every backend's update uses, computed in Double as PyTorch computes them on the host:
    /// `lr / (1 − β₁ᵗ)`, `√(1 − β₂ᵗ)`, `1 − lr·wd`, `1 − β₁` (the lerp weight) and `1 − β₂`.
    public let stepSize: Float, secondCorrectionRoot: Float, decay: Float, firstWeight: Float, secondWeight: Float

    public init(parameters: Tensor, gradients: Tensor, firstMoment: Tensor, secondMoment: Tensor,
                learningRate: Float, beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8,
                weightDecay: Float = 0.01, step: Int, gradientScale: Float = 1) throws {
        try parameters.backend.requireOwned("adamW", parameters, gradients, firstMoment, secondMoment)
        try requireFloat32("adamW", ("parameters", parameters), ("gradients", gradients), ("firstMoment", firstMoment),
                           ("secondMoment", secondMoment))
        let count = parameters.count
        guard gradients.count == count, firstMoment.count == count, secondMoment.count == count else {
            throw LoRAError.shapeMismatch("adamW: parameters \(describe(parameters.shape)), gradients \(describe(gradients.shape)), "
                + "m \(describe(firstMoment.shape)) and v \(describe(secondMoment.shape)) differ in size")
        }
        let storages = [parameters, gradients, firstMoment, secondMoment].map { ObjectIdentifier($0.storage) }
        guard Set(storages).count == 4 else {
            throw LoRAError.invalidArgument("adamW: parameters, gradients, m and v must be four different tensors")
        }
        guard learningRate.isFinite, learningRate >= 0 else {
            throw LoRAError.invalidArgument("adamW: learning rate \(learningRate) must be ≥ 0 and finite")
        }
        guard (0..<1).contains(beta1), (0..<1).contains(beta2) else {
            throw LoRAError.invalidArgument("adamW: betas (\(beta1), \(beta2)) must lie in [0, 1)")
        }
        guard epsilon.isFinite, epsilon >= 0, weightDecay.isFinite, weightDecay >= 0 else {
            throw LoRAError.invalidArgument("adamW: eps \(epsilon) and weight decay \(weightDecay) must be ≥ 0 and finite")
        }
        guard step >= 1 else { throw LoRAError.invalidArgument("adamW: step \(step) must be ≥ 1 (it counts from 1)") }
        guard gradientScale.isFinite else {
            throw LoRAError.invalidArgument("adamW: gradientScale \(gradientScale) must be finite")
        }
        (self.parameters, self.gradients, self.firstMoment, self.secondMoment) = (parameters, gradients, firstMoment, secondMoment)
        (self.learningRate, self.beta1, self.beta2, self.epsilon) = (learningRate, beta1, beta2, epsilon)
        (self.weightDecay, self.step, self.gradientScale) = (weightDecay, step, gradientScale)
        let t = Double(step)
        stepSize = Float(Double(learningRate) / (1 - Foundation.pow(Double(beta1), t)))
        secondCorrectionRoot = Float((1 - Foundation.pow(Double(beta2), t)).squareRoot())
        decay = Float(1 - Double(learningRate) * Double(weightDecay))
        (firstWeight, secondWeight) = (Float(1 - Double(beta1)), Float(1 - Double(beta2)))
    }
}
