// Cross-entropy of logits against class ids, fused with the softmax and its gradient so the vocab-sized
// probabilities are never stored. Layout: logits [rows, classes], targets [rows].

/// `losses[r] = logsumexp(logits[r]) − logits[r, target[r]]`, and when `dlogits` is given,
/// `dlogits[r] = gradientScale·(softmax(logits[r]) − onehot(target[r]))`.
///
/// Targets are int32 class ids. A negative target (PyTorch's `ignore_index`, −100) gives loss 0 and gradient 0.
/// A target at or above `classes` gives a NaN loss (and NaN gradients), so a trainer's NaN guard reports it; the
/// check happens on the device. Logits, losses and dlogits are float32.
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
        try targets.requireDType([.int32], op: "crossEntropy", operand: "targets")
        try requireFloat32("crossEntropy", ("logits", logits), ("losses", losses), ("dlogits", dlogits))
        let classes = logits.shape[logits.rank - 1]
        let rows = logits.count / classes
        guard targets.count == rows, losses.count == rows else {
            throw LoRAError.shapeMismatch("crossEntropy: logits \(describe(logits.shape)) have \(rows) rows but targets are "
                + "\(describe(targets.shape)) and losses \(describe(losses.shape))")
        }
        if let dlogits, dlogits.shape != logits.shape {
            throw LoRAError.shapeMismatch("crossEntropy: dlogits \(describe(dlogits.shape)) must match logits \(describe(logits.shape))")
        }
        guard gradientScale.isFinite else {
            throw LoRAError.invalidArgument("crossEntropy: gradientScale \(gradientScale) must be finite")
        }
        (self.logits, self.targets, self.losses, self.dlogits) = (logits, targets, losses, dlogits)
        (self.gradientScale, self.rows, self.classes) = (gradientScale, rows, classes)
    }
}
