// The row ops: softmax (plain, causal, with cached keys, windowed) and its gradient, layer norm and RMS norm and their
// gradients (accumulating, in place), cross-entropy with its fused gradient, and RoPE forward and inverse. Row widths
// straddle the row kernels' power-of-two work-groups (up to 256 items): 1, 64, 257, 300, 769, 1000. `rows.other_variant`
// runs them again with the row-kernel variant and work-group sizes the device would not pick.
// Bounds: normwise c·(n + ulps)·u (Comparison.swift) with n the longest sum. Layer norm's results are also scaled by
// how far the rows sit from zero against their spread (κ = max|x| / std, computed from the data): subtracting the
// mean loses that factor before anything else happens.
import Foundation
import SwiftLoRA

extension Selftest {
    /// `4·(n + ulps)·u`: a row op with sums of n terms and a few transcendental calls, two devices.
    static func rowBound(_ n: Int, condition: Double = 1) -> Double {
        4 * (Double(n) + transcendentalULPs) * unitRoundoff * condition
    }

    /// Runs `body` on both devices and compares each named output within `bound`, normwise unless `magnitudes` says.
    func compareRows(_ label: String, names: [String], bound: Double, magnitudes: [Comparison.Magnitude]? = nil,
                     _ body: (any Backend) throws -> [[Float]]) throws -> [Comparison] {
        let (device, cpu) = try both(body)
        return names.indices.map {
            Comparison.measure(device[$0], cpu[$0], magnitude: magnitudes?[$0] ?? .normwise, tolerance: bound,
                               label: "\(label) \(names[$0])")
        }
    }

    /// The largest magnitude among the terms a normalization's dx is computed from, per element
    /// `rstd·(|g| + mean|g| + |x̂|·mean|g·x̂|)` with g = dy·gamma (RMS norm: no mean terms, x̂ = x·rstd), and a
    /// prior dx added to. dx may cancel far below its terms (a row of one element: exactly), so its error is
    /// measured against them.
    static func normGradientScale(x: [Float], gamma: [Float], dy: [Float], prior: [Float]?, rows: Int, cols: Int,
                                  centered: Bool, epsilon: Double) -> Double {
        var largest = prior?.map { Double(abs($0)) }.max() ?? 0
        for r in 0..<rows {
            let xr = x[(r * cols)..<((r + 1) * cols)].map(Double.init)
            let mean = centered ? xr.reduce(0, +) / Double(cols) : 0
            let rstd = 1 / (xr.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(cols) + epsilon).squareRoot()
            let g = (0..<cols).map { abs(Double(dy[r * cols + $0]) * Double(gamma[$0])) }
            let xhat = xr.map { abs(($0 - mean) * rstd) }
            let meanG = centered ? g.reduce(0, +) / Double(cols) : 0
            let meanGX = zip(g, xhat).map { $0 * $1 }.reduce(0, +) / Double(cols)
            for j in 0..<cols { largest = max(largest, rstd * (g[j] + meanG + xhat[j] * meanGX)) }
        }
        return largest
    }

    // MARK: - Softmax

    struct SoftmaxProblem: CustomStringConvertible {
        let shape: [Int]
        var scale: Float = 1, causal = false, window: Int? = nil
        var description: String {
            "[\(shape.map(String.init).joined(separator: ", "))]" + (scale != 1 ? " scale \(scale)" : "")
                + (causal ? " causal" : "") + (window.map { " window \($0)" } ?? "")
        }
    }

    static let softmaxProblems = [
        SoftmaxProblem(shape: [7, 300], scale: 0.7),
        SoftmaxProblem(shape: [5, 1]),
        SoftmaxProblem(shape: [2, 37, 37], causal: true),
        SoftmaxProblem(shape: [3, 5, 40], scale: 0.5, causal: true),
        SoftmaxProblem(shape: [2, 24, 24], causal: true, window: 5),
        SoftmaxProblem(shape: [4, 6, 30], causal: true, window: 9),
    ]

    static let softmaxChecks: [Check] = [
        Check(name: "softmax") { s in
            .compared(try softmaxProblems.enumerated().flatMap { i, p in
                try s.compareRows(p.description, names: ["y", "y in place"], bound: rowBound(p.shape.last!)) { b in
                    let values = randomValues(p.shape.reduce(1, *), seed: 3000 + UInt64(i), bound: 4)
                    let x = try b.upload(values, shape: p.shape), y = try b.empty(p.shape)
                    try b.softmax(Softmax(x: x, y: y, scale: p.scale, causal: p.causal, window: p.window))
                    try b.softmax(Softmax(x: x, y: x, scale: p.scale, causal: p.causal, window: p.window))
                    return [try y.toArray(), try x.toArray()]
                }
            })
        },
        Check(name: "softmax.backward") { s in
            .compared(try softmaxProblems.enumerated().flatMap { i, p in
                try s.compareRows(p.description, names: ["dx", "dx in place"], bound: rowBound(p.shape.last!)) { b in
                    let count = p.shape.reduce(1, *)
                    let y = try b.upload(randomValues(count, seed: 3100 + UInt64(i), bound: 4), shape: p.shape)
                    try b.softmax(Softmax(x: y, y: y, scale: p.scale, causal: p.causal, window: p.window))
                    let dy = try b.upload(randomValues(count, seed: 3200 + UInt64(i)), shape: p.shape)
                    let dx = try b.empty(p.shape)
                    try b.softmaxBackward(SoftmaxBackward(y: y, dy: dy, dx: dx, scale: p.scale, causal: p.causal, window: p.window))
                    try b.softmaxBackward(SoftmaxBackward(y: y, dy: dy, dx: dy, scale: p.scale, causal: p.causal, window: p.window))
                    return [try dx.toArray(), try dy.toArray()]
                }
            })
        },
    ]

    // MARK: - Normalization

    static let normShapes: [(rows: Int, cols: Int)] = [(5, 300), (3, 769), (4, 64), (6, 1), (2, 257)]

    /// Layer-norm inputs: rows far from zero against their spread (the variance must not cancel away), gamma, beta.
    static func layerNormInputs(rows: Int, cols: Int, seed: UInt64) -> (x: [Float], gamma: [Float], beta: [Float]) {
        (randomValues(rows * cols, seed: seed, bound: 3).enumerated().map { $0.element + Float($0.offset % 5) + 10 },
         randomValues(cols, seed: seed + 1).map { 1 + $0 / 2 }, randomValues(cols, seed: seed + 2))
    }

    /// κ = max|x| / std over the rows: what subtracting the mean costs in relative accuracy (1 for a constant row,
    /// which normalizes to beta).
    static func centeringCondition(_ x: [Float], rows: Int, cols: Int) -> Double {
        var worst = 1.0
        for r in 0..<rows {
            let row = x[(r * cols)..<((r + 1) * cols)].map(Double.init)
            let mean = row.reduce(0, +) / Double(cols)
            let std = (row.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(cols)).squareRoot()
            if std > 1e-3 { worst = max(worst, row.map(abs).max()! / std) }
        }
        return worst
    }

    static let normalizationChecks: [Check] = [
        Check(name: "layer_norm") { s in
            .compared(try normShapes.enumerated().flatMap { i, shape in
                let (rows, cols) = shape
                let (xv, gv, bv) = layerNormInputs(rows: rows, cols: cols, seed: 3300 + UInt64(i) * 3)
                let bound = rowBound(cols, condition: centeringCondition(xv, rows: rows, cols: cols))
                return try s.compareRows("[\(rows), \(cols)]", names: ["y", "mean", "rstd", "y without statistics"], bound: bound) { b in
                    let x = try b.upload(xv, shape: [rows, cols]), gamma = try b.upload(gv, shape: [cols])
                    let beta = try b.upload(bv, shape: [cols])
                    let y = try b.empty([rows, cols]), mean = try b.empty([rows]), rstd = try b.empty([rows])
                    try b.layerNorm(LayerNorm(x: x, gamma: gamma, beta: beta, y: y, mean: mean, rstd: rstd))
                    let bare = try b.empty([rows, cols])
                    try b.layerNorm(LayerNorm(x: x, gamma: gamma, beta: beta, y: bare))
                    return [try y.toArray(), try mean.toArray(), try rstd.toArray(), try bare.toArray()]
                }
            })
        },
        Check(name: "layer_norm.backward") { s in
            .compared(try normShapes.enumerated().flatMap { i, shape in
                let (rows, cols) = shape
                let (xv, gv, bv) = layerNormInputs(rows: rows, cols: cols, seed: 3400 + UInt64(i) * 3)
                let bound = rowBound(cols + rows, condition: centeringCondition(xv, rows: rows, cols: cols))
                return try [(false, false), (true, false), (false, true)].flatMap { accumulate, inPlace in
                    let dyv = randomValues(rows * cols, seed: 3500 + UInt64(i)), prior = randomValues(rows * cols, seed: 3600 + UInt64(i))
                    let scale = normGradientScale(x: xv, gamma: gv, dy: dyv, prior: accumulate ? prior : nil, rows: rows, cols: cols,
                                                  centered: true, epsilon: 1e-5)
                    return try s.compareRows("[\(rows), \(cols)] accumulate \(accumulate) in place \(inPlace)",
                                             names: ["dx", "dgamma", "dbeta"], bound: bound,
                                             magnitudes: [.scale(scale), .normwise, .normwise]) { b in
                        let x = try b.upload(xv, shape: [rows, cols]), gamma = try b.upload(gv, shape: [cols])
                        let mean = try b.empty([rows]), rstd = try b.empty([rows])
                        try b.layerNorm(LayerNorm(x: x, gamma: gamma, beta: b.upload(bv, shape: [cols]), y: b.empty([rows, cols]),
                                                  mean: mean, rstd: rstd))
                        let dy = try b.upload(dyv, shape: [rows, cols])
                        let dx = inPlace ? dy : try b.upload(prior, shape: [rows, cols])
                        let dgamma = try b.upload(randomValues(cols, seed: 3700), shape: [cols])
                        let dbeta = try b.upload(randomValues(cols, seed: 3701), shape: [cols])
                        try b.layerNormBackward(LayerNormBackward(x: x, gamma: gamma, mean: mean, rstd: rstd, dy: dy, dx: dx,
                                                                  dgamma: dgamma, dbeta: dbeta, accumulate: accumulate))
                        return [try dx.toArray(), try dgamma.toArray(), try dbeta.toArray()]
                    }
                }
            })
        },
        Check(name: "rms_norm") { s in
            .compared(try normShapes.enumerated().flatMap { i, shape in
                let (rows, cols) = shape
                return try s.compareRows("[\(rows), \(cols)]", names: ["y", "rstd", "y without rstd"], bound: rowBound(cols)) { b in
                    let x = try b.upload(randomValues(rows * cols, seed: 3800 + UInt64(i), bound: 2), shape: [rows, cols])
                    let gamma = try b.upload(randomValues(cols, seed: 3801 + UInt64(i)).map { 1 + $0 / 2 }, shape: [cols])
                    let y = try b.empty([rows, cols]), rstd = try b.empty([rows]), bare = try b.empty([rows, cols])
                    try b.rmsNorm(RMSNorm(x: x, gamma: gamma, y: y, rstd: rstd, epsilon: 1e-5))
                    try b.rmsNorm(RMSNorm(x: x, gamma: gamma, y: bare, epsilon: 1e-6))
                    return [try y.toArray(), try rstd.toArray(), try bare.toArray()]
                }
            })
        },
        Check(name: "rms_norm.backward") { s in
            .compared(try normShapes.enumerated().flatMap { i, shape in
                let (rows, cols) = shape
                let xv = randomValues(rows * cols, seed: 3900 + UInt64(i), bound: 2)
                let gv = randomValues(cols, seed: 3901 + UInt64(i)).map { 1 + $0 / 2 }
                return try [(false, false), (true, false), (false, true)].flatMap { accumulate, inPlace in
                    let dyv = randomValues(rows * cols, seed: 3902 + UInt64(i)), prior = randomValues(rows * cols, seed: 3903 + UInt64(i))
                    let scale = normGradientScale(x: xv, gamma: gv, dy: dyv, prior: accumulate ? prior : nil, rows: rows, cols: cols,
                                                  centered: false, epsilon: 1e-5)
                    return try s.compareRows("[\(rows), \(cols)] accumulate \(accumulate) in place \(inPlace)", names: ["dx", "dgamma"],
                                             bound: rowBound(cols + rows), magnitudes: [.scale(scale), .normwise]) { b in
                        let x = try b.upload(xv, shape: [rows, cols]), gamma = try b.upload(gv, shape: [cols])
                        let rstd = try b.empty([rows])
                        try b.rmsNorm(RMSNorm(x: x, gamma: gamma, y: b.empty([rows, cols]), rstd: rstd, epsilon: 1e-5))
                        let dy = try b.upload(dyv, shape: [rows, cols])
                        let dx = inPlace ? dy : try b.upload(prior, shape: [rows, cols])
                        let dgamma = try b.upload(randomValues(cols, seed: 3904), shape: [cols])
                        try b.rmsNormBackward(RMSNormBackward(x: x, gamma: gamma, rstd: rstd, dy: dy, dx: dx, dgamma: dgamma,
                                                              accumulate: accumulate))
                        return [try dx.toArray(), try dgamma.toArray()]
                    }
                }
            })
        },
    ]

    // MARK: - Cross-entropy and RoPE

    static let crossEntropyCheck = Check(name: "cross_entropy") { s in
        .compared(try [(9, 50), (4, 257), (7, 1000), (3, 1)].enumerated().flatMap { i, shape in
            let (rows, classes) = shape
            var generator = SeededGenerator(seed: 4000 + UInt64(i))
            // One ignored row (PyTorch's ignore_index), the rest valid class ids.
            let targets = (0..<rows).map { r in r == 1 ? Int32(-100) : Int32(generator.next() % UInt64(classes)) }
            return try s.compareRows("[\(rows), \(classes)]", names: ["losses", "dlogits", "losses without gradient",
                                                                    "losses in place", "dlogits in place"],
                                     bound: rowBound(classes)) { b in
                let values = randomValues(rows * classes, seed: 4100 + UInt64(i), bound: 6)
                let logits = try b.upload(values, shape: [rows, classes]), ids = try b.upload(targets, shape: [rows])
                let losses = try b.empty([rows]), dlogits = try b.empty([rows, classes]), bare = try b.empty([rows])
                try b.crossEntropy(CrossEntropy(logits: logits, targets: ids, losses: losses, dlogits: dlogits, gradientScale: 0.25))
                try b.crossEntropy(CrossEntropy(logits: logits, targets: ids, losses: bare))
                let inPlace = try b.empty([rows])
                try b.crossEntropy(CrossEntropy(logits: logits, targets: ids, losses: inPlace, dlogits: logits, gradientScale: 0.5))
                return [try losses.toArray(), try dlogits.toArray(), try bare.toArray(), try inPlace.toArray(), try logits.toArray()]
            }
        })
    }

    static let ropeCheck = Check(name: "rope") { s in
        // B 2 × T 7 rows of 3 heads × 16, positions from 5 (a cache's), plus a decoding row; forward, inverse, in place.
        .compared(try [(2, 7, 3, 16, 5), (1, 1, 4, 8, 19)].flatMap { b, t, heads, d, start in
            let positions = start + t, half = d / 2
            let angles = (0..<positions).flatMap { p in (0..<half).map { i in Float(p) * Float.pow10(-Float(i) / Float(half)) } }
            return try s.compareRows("B\(b) T\(t) heads \(heads) D\(d) start \(start)", names: ["y", "inverse", "in place"],
                                     bound: 4 * 3 * unitRoundoff) { backend in
                let x = try backend.upload(randomValues(b * t * heads * d, seed: 4200 + UInt64(d)), shape: [b * t, heads * d])
                let cos = try backend.upload(angles.map { Foundation.cos($0) }, shape: [positions, half])
                let sin = try backend.upload(angles.map { Foundation.sin($0) }, shape: [positions, half])
                let y = try backend.empty(x.shape), back = try backend.empty(x.shape)
                try backend.rope(RoPE(input: x, output: y, heads: heads, headDim: d, sequenceLength: t, start: start, cos: cos, sin: sin))
                try backend.rope(RoPE(input: y, output: back, heads: heads, headDim: d, sequenceLength: t, start: start,
                                      cos: cos, sin: sin, inverse: true))
                try backend.rope(RoPE(input: x, output: x, heads: heads, headDim: d, sequenceLength: t, start: start, cos: cos, sin: sin))
                return [try y.toArray(), try back.toArray(), try x.toArray()]
            }
        })
    }

    static var rowChecks: [Check] { softmaxChecks + normalizationChecks + [crossEntropyCheck, ropeCheck, otherVariantRowsCheck] }

    /// The softmax, normalization and cross-entropy checks again under kernel parameters this device does not pick:
    /// softmax's other variant (one work-item per row where the device takes a work-group per row, and the reverse)
    /// and 16-item reduction groups for every row kernel (a -D GROUP_MAX build, with rows wider than their group).
    static let otherVariantRowsCheck = Check(name: "rows.other_variant") { s in
        let current = s.device.kernelParameters
        let values = current.with(["softmax.GROUP": 1 - current["softmax.GROUP"], "softmax.WG": 16, "layernorm.WG": 16,
                                   "rmsnorm.WG": 16, "cross_entropy.WG": 16])
        if let violation = values.violation(on: s.device.device) { return .skipped(violation) }
        return .compared(try s.device.withKernelParameters(values) {
            try (softmaxChecks + normalizationChecks + [crossEntropyCheck]).flatMap { check -> [Comparison] in
                guard case .compared(let comparisons) = try check.body(s) else { return [] }
                return comparisons.map { Comparison(error: $0.error, tolerance: $0.tolerance, label: "\(check.name) \($0.label)") }
            }
        })
    }
}

extension Float {
    /// 10^x (RoPE's angle schedule in the selftest: any spread of frequencies will do).
    static func pow10(_ x: Float) -> Float { Foundation.pow(10, x) }
}
