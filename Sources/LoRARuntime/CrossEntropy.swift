// Cross-entropy of logits against class ids, fused with the softmax and its gradient so the vocab-sized
// probabilities are never stored. Layout: logits [rows, classes], targets [rows].

/// `losses[r] = logsumexp(logits[r]) − logits[r, target[r]]`, and when `dlogits` is given,
/// `dlogits[r] = gradientScale·(softmax(logits[r]) − onehot(target[r]))`.
///
/// Targets are class ids stored as floats (exact below 2²⁴). A negative target (PyTorch's `ignore_index`, −100)
/// gives loss 0 and gradient 0. A target that is not a negative number and not an integer below `classes` gives
/// a NaN loss (and NaN gradients), so a trainer's NaN guard reports it; the check happens on the device.
/// For a mean over the kept rows pass `gradientScale = 1/kept` and reduce `losses` with `Reduction`.
/// `dlogits` may be `logits` (the gradient overwrites the logits, saving a vocab-sized buffer).
public struct CrossEntropy: BackendOp {
    public var owner: any Backend { logits.backend }
    public let logits: Tensor, targets: Tensor, losses: Tensor
    public let dlogits: Tensor?
    public let gradientScale: Float
    public let rows: Int, classes: Int

    public init(logits: Tensor, targets: Tensor, losses: Tensor, dlogits: Tensor? = nil, gradientScale: Float = 1) throws {
        try logits.backend.requireOwned("crossEntropy", logits, targets, losses, dlogits)
        let classes = logits.shape[logits.rank - 1]
        let rows = logits.count / classes
        guard targets.count == rows, losses.count == rows else {
            throw LoRAError.shapeMismatch("crossEntropy: logits \(describe(logits.shape)) have \(rows) rows but targets are "
                + "\(describe(targets.shape)) and losses \(describe(losses.shape))")
        }
        if let dlogits, dlogits.shape != logits.shape {
            throw LoRAError.shapeMismatch("crossEntropy: dlogits \(describe(dlogits.shape)) must match logits \(describe(logits.shape))")
        }
        guard classes < 1 << 24 else {
            throw LoRAError.invalidArgument("crossEntropy: \(classes) classes cannot be named exactly by float targets (limit 2^24)")
        }
        guard gradientScale.isFinite else {
            throw LoRAError.invalidArgument("crossEntropy: gradientScale \(gradientScale) must be finite")
        }
        (self.logits, self.targets, self.losses, self.dlogits) = (logits, targets, losses, dlogits)
        (self.gradientScale, self.rows, self.classes) = (gradientScale, rows, classes)
    }
}
