// CPU cross-entropy fused with softmax: per row, the max, Σ exp (written straight into dlogits when the
// gradient is wanted), the loss, then one scaling pass. Rows are independent, so any thread count gives the
// same bits.
import Foundation

extension CPUBackend {
    public func crossEntropy(_ op: CrossEntropy) throws {
        try requireOwned(op)
        let (logits, targets, losses, classes) = (elements(op.logits), int32s(op.targets), elements(op.losses), op.classes)
        let dlogits = op.dlogits.map(elements)
        let scale = op.gradientScale
        forEachRowRange(rows: op.rows, cols: classes) { rows in
            for r in rows {
                let gradient = dlogits.map { $0 + r * classes }
                losses[r] = Self.crossEntropyRow(logits + r * classes, target: targets[r], classes: classes,
                                                 gradient: gradient, scale: scale)
            }
        }
    }

    /// The loss of one row; writes scale·(softmax − onehot) into `gradient` when given (it may be `x`).
    static func crossEntropyRow(_ x: UnsafeMutablePointer<Float>, target: Int32, classes: Int,
                                gradient: UnsafeMutablePointer<Float>?, scale: Float) -> Float {
        if target < 0 {  // ignored row
            gradient?.update(repeating: 0, count: classes)
            return 0
        }
        guard target < classes else {
            gradient?.update(repeating: .nan, count: classes)
            return .nan
        }
        let t = Int(target)
        let targetLogit = x[t]  // read before the gradient may overwrite x
        let largest = scaledMaximum(x, count: classes, scale: 1)
        // Without a gradient the exponentials still need somewhere to go: this thread's scratch row.
        let e = gradient ?? ThreadScratch.current(.part, floats: classes)
        let sum = exponentiate(x, e, count: classes, scale: 1, shift: largest)
        if let gradient {
            let factor = Vector(repeating: scale / sum)
            let full = classes & ~15
            for j in stride(from: 0, to: full, by: 16) { storeVector(loadVector(gradient + j) * factor, gradient + j) }
            for j in full..<classes { gradient[j] *= factor[0] }
            gradient[t] -= scale
        }
        return Foundation.log(sum) + largest - targetLogit
    }
}
