// CPU softmax over the last axis (scale, causal mask) and its gradient. Rows are independent.
import Foundation

extension CPUBackend {
    /// y[row, j] = exp(s·x[j] − max) / Σ over the visible keys; masked entries 0.
    public func softmax(_ op: Softmax) throws {
        try requireOwned(op)
        let (x, y) = (elements(op.x), elements(op.y))
        for r in 0..<op.rows {
            let xr = x + r * op.cols, yr = y + r * op.cols
            let visible = op.visibleCount(row: r)
            var maximum = -Float.infinity
            for j in 0..<visible { maximum = max(maximum, op.scale * xr[j]) }
            var sum: Float = 0
            for j in 0..<visible {
                let e = exp(op.scale * xr[j] - maximum)
                yr[j] = e
                sum += e
            }
            let inverse = visible > 0 ? 1 / sum : 0
            for j in 0..<visible { yr[j] *= inverse }
            for j in visible..<op.cols { yr[j] = 0 }
        }
    }

    /// dx = s·y⊙(dy − Σ dy⊙y), per row.
    public func softmaxBackward(_ op: SoftmaxBackward) throws {
        try requireOwned(op)
        let (y, dy, dx) = (elements(op.y), elements(op.dy), elements(op.dx))
        for r in 0..<op.rows {
            let base = r * op.cols
            var dot: Float = 0
            for j in 0..<op.cols { dot += dy[base + j] * y[base + j] }
            for j in 0..<op.cols { dx[base + j] = op.scale * y[base + j] * (dy[base + j] - dot) }
        }
    }
}
