// The elementwise and data-movement ops: GELU and SwiGLU with their gradients, AdamW, dropout, embeddings (float32,
// bfloat16 and float16 tables, accumulating) and their gradient, dtype conversion, whole-tensor sums, block copies,
// bias adds, axpy, and the queue's own fill, copy and transfer commands.
// Ops that only move, select or convert values, and sums of numbers chosen so every partial sum is exact, must match
// the CPU bit for bit; the arithmetic ones are held normwise to a few ulp per operation (Comparison.swift).
import Foundation
import SwiftLoRA

extension Selftest {
    /// Sizes for elementwise kernels: one element, a ragged count, one past a power of two.
    static let elementCounts = [1, 1000, 4097]

    static let activationChecks: [Check] = [
        Check(name: "gelu") { s in
            // gelu_new: tanh through exp, a handful of products: 4·(ulps + 8)·u.
            .compared(try elementCounts.flatMap { count in
                try s.compareRows("\(count) elements", names: ["y", "dx", "dx in place"],
                                  bound: 4 * (transcendentalULPs + 8) * unitRoundoff) { b in
                    let x = try b.upload(randomValues(count, seed: 5000 + UInt64(count), bound: 5), shape: [count])
                    let y = try b.empty([count])
                    try b.gelu(GELU(x: x, y: y))
                    let dy = try b.upload(randomValues(count, seed: 5001), shape: [count]), dx = try b.empty([count])
                    try b.geluBackward(GELUBackward(x: x, dy: dy, dx: dx))
                    try b.geluBackward(GELUBackward(x: x, dy: dy, dx: dy))
                    return [try y.toArray(), try dx.toArray(), try dy.toArray()]
                }
            })
        },
        Check(name: "swiglu") { s in
            .compared(try elementCounts.flatMap { count in
                try s.compareRows("\(count) elements", names: ["y", "dGate", "dUp"],
                                  bound: 4 * (transcendentalULPs + 6) * unitRoundoff) { b in
                    let gate = try b.upload(randomValues(count, seed: 5100 + UInt64(count), bound: 5), shape: [count])
                    let up = try b.upload(randomValues(count, seed: 5101, bound: 2), shape: [count])
                    let y = try b.empty([count])
                    try b.swiglu(SwiGLU(gate: gate, up: up, y: y))
                    let dy = try b.upload(randomValues(count, seed: 5102), shape: [count])
                    let dGate = try b.empty([count]), dUp = try b.empty([count])
                    try b.swigluBackward(SwiGLUBackward(gate: gate, up: up, dy: dy, dGate: dGate, dUp: dUp))
                    return [try y.toArray(), try dGate.toArray(), try dUp.toArray()]
                }
            })
        },
    ]

    static let adamWCheck = Check(name: "adamw") { s in
        // Three steps with weight decay and a gradient scale; each step is ~10 operations and a sqrt per element.
        .compared(try [1, 1000, 4097].flatMap { count in
            try s.compareRows("\(count) parameters, 3 steps", names: ["parameters", "m", "v"],
                              bound: 3 * 4 * (transcendentalULPs + 10) * unitRoundoff) { b in
                let p = try b.upload(randomValues(count, seed: 5200 + UInt64(count)), shape: [count])
                let m = try b.zeros([count]), v = try b.zeros([count])
                for step in 1...3 {
                    let g = try b.upload(randomValues(count, seed: 5201 + UInt64(step), bound: 0.1), shape: [count])
                    try b.adamW(AdamW(parameters: p, gradients: g, firstMoment: m, secondMoment: v, learningRate: 1e-2,
                                      weightDecay: 0.1, step: step, gradientScale: 0.5))
                }
                return [try p.toArray(), try m.toArray(), try v.toArray()]
            }
        })
    }

    static let dropoutCheck = Check(name: "dropout") { s in
        // The mask is a counter-based hash of (seed, index): the same elements drop on every device, and the kept
        // ones are multiplied by the same 1/(1 − p). Bit for bit, out of place and in place (the latter as a part of a
        // larger tensor's mask, from an index offset that wraps past 2³²).
        .compared(try [(Float(0.1), 4097), (0.5, 1000), (0, 33)].flatMap { p, count in
            let (device, cpu) = try s.both { b -> [[Float]] in
                let x = try b.upload(randomValues(count, seed: 5300 + UInt64(count)), shape: [count])
                let y = try b.empty([count])
                try b.dropout(Dropout(x: x, y: y, probability: p, seed: 0x1234_5678_9ABC + UInt64(count)))
                try b.dropout(Dropout(x: x, y: x, probability: p, seed: 77, indexOffset: .max - 500))
                return [try y.toArray(), try x.toArray()]
            }
            return [Comparison.exact(device[0], cpu[0], label: "p \(p), \(count) elements"),
                    Comparison.exact(device[1], cpu[1], label: "p \(p), \(count) elements in place")]
        })
    }

    static let embeddingChecks: [Check] = [
        Check(name: "embedding") { s in
            // Token rows (repeated ids) from a float32, bfloat16 or float16 table, then positions added (accumulate).
            .compared(try DType.floatingPoint.flatMap { dtype in
                let (vocab, width, count) = (300, 70, 45)
                var generator = SeededGenerator(seed: 5400)
                let ids = (0..<count).map { _ in Int32(generator.next() % 40) }
                let table = rounded(randomValues(vocab * width, seed: 5401), to: dtype)
                let (device, cpu) = try s.both { b -> [Float] in
                    let out = try b.empty([count, width])
                    try b.embedding(EmbeddingLookup(table: b.upload(table, as: dtype, shape: [vocab, width]),
                                                    indices: b.upload(ids, shape: [count]), output: out))
                    let positions = try b.upload(randomValues(count * width, seed: 5402), shape: [count, width])
                    try b.embedding(EmbeddingLookup(table: positions, indices: b.upload((0..<count).map { Int32($0) }, shape: [count]),
                                                    output: out, accumulate: true))
                    return try out.toArray()
                }
                return [Comparison.exact(device, cpu, label: "\(dtype) table [\(vocab), \(width)], \(count) ids")]
            })
        },
        Check(name: "embedding.backward") { s in
            // Repeated ids add into one row in id order on every device: the same sums, bit for bit.
            let (vocab, width, count) = (50, 37, 300)
            var generator = SeededGenerator(seed: 5500)
            let ids = (0..<count).map { _ in Int32(generator.next() % 20) }
            let (device, cpu) = try s.both { b -> [Float] in
                let dTable = try b.upload(randomValues(vocab * width, seed: 5501), shape: [vocab, width])
                try b.embeddingBackward(EmbeddingBackward(indices: b.upload(ids, shape: [count]),
                                                          dOutput: b.upload(randomValues(count * width, seed: 5502), shape: [count, width]),
                                                          dTable: dTable))
                return try dTable.toArray()
            }
            return .compared([Comparison.exact(device, cpu, label: "[\(vocab), \(width)] table, \(count) ids")])
        },
    ]

    /// Values that exercise conversion: ordinary numbers, ties, values beyond float16's range, subnormals of each
    /// format, signed zeros, infinities and NaN.
    static let conversionValues: [Float] = randomValues(997, seed: 5600, bound: 100) + [
        0, -0.0, 1, -1, 65504, 65520, 70000, -1e9, 1e-8, 6e-8, 5.96e-8, 3e-5, Float.leastNormalMagnitude,
        Float(bitPattern: 0x0001_1170), -Float.leastNonzeroMagnitude,  // float32 subnormals
        Float.greatestFiniteMagnitude, .infinity, -.infinity, .nan,
        Float(bitPattern: 0x3F80_8000), Float(bitPattern: 0x3F81_8000), Float(bitPattern: 0x3F80_7FFF),  // bf16 ties
        Float(bitPattern: 0x3F80_1000), Float(bitPattern: 0x3F80_3000),  // float16 ties
    ]

    static let convertCheck = Check(name: "convert") { s in
        // Every pair of float dtypes, round to nearest even: bit for bit.
        var comparisons: [Comparison] = []
        for from in DType.floatingPoint {
            for to in DType.floatingPoint where to != from {
                let source = rounded(conversionValues, to: from)
                let (device, cpu) = try s.both { b -> [Float] in
                    let converted = try b.converted(b.upload(source, as: from, shape: [source.count]), to: to)
                    return try b.converted(converted, to: .float32).toArray()
                }
                comparisons.append(Comparison.exact(device, cpu, label: "\(from) to \(to)"))
            }
        }
        return .compared(comparisons)
    }

    static let reductionCheck = Check(name: "reduction") { s in
        // Multiples of 1/4 up to 1 in magnitude: every partial sum of up to 2²² of them, and of their squares, is exact
        // in float32 whatever the order, so the device must match bit for bit, across the first pass's group and
        // partial counts (256 × 256). Then random values against the order-free bound 2γₙ·Σ|x|.
        var comparisons: [Comparison] = []
        for count in [1, 255, 257, 65_537, 300_001] {
            var generator = SeededGenerator(seed: 5700 + UInt64(count))
            let values = (0..<count).map { _ in Float(Int(generator.next() % 9) - 4) / 4 }
            for kind in [Reduction.Kind.sum, .sumOfSquares] {
                for accumulate in [false, true] {
                    let (device, cpu) = try s.both { b -> [Float] in
                        let result = try b.upload([0.5], shape: [1])
                        try b.reduce(Reduction(kind, of: b.upload(values, shape: [count]), into: result, accumulate: accumulate))
                        return try result.toArray()
                    }
                    comparisons.append(Comparison.exact(device, cpu, label: "\(kind) of \(count) quarters, accumulate \(accumulate)"))
                }
            }
        }
        let random = randomValues(100_003, seed: 5800, bound: 3)
        for kind in [Reduction.Kind.sum, .sumOfSquares] {
            let (device, cpu) = try s.both { b -> [Float] in
                let result = try b.zeros([1])
                try b.reduce(Reduction(kind, of: b.upload(random, shape: [random.count]), into: result))
                return try result.toArray()
            }
            let magnitude = kind == .sum ? random.reduce(0) { $0 + abs($1) } : random.reduce(0) { $0 + $1 * $1 }
            comparisons.append(Comparison.measure(device, cpu, magnitude: .componentwise([magnitude]),
                                                  tolerance: sumBound(random.count), label: "\(kind) of \(random.count) random values"))
        }
        return .compared(comparisons)
    }

    static let movementChecks: [Check] = [
        Check(name: "block_copy") { s in
            // A batch of 3 blocks of 13×37 between padded, offset layouts; and one row.
            .compared(try [(13, 37, 3), (1, 300, 1)].map { rows, cols, batch in
                let (sourceLD, destinationLD) = (cols + 4, cols + 13)
                let (sourceStride, destinationStride) = (rows * sourceLD + 7, rows * destinationLD)
                let sourceCount = 5 + (batch - 1) * sourceStride + rows * sourceLD
                let destinationCount = 2 + batch * destinationStride
                let (device, cpu) = try s.both { b -> [Float] in
                    let source = try b.upload(randomValues(sourceCount, seed: 5900), shape: [sourceCount])
                    let destination = try b.upload(randomValues(destinationCount, seed: 5901), shape: [destinationCount])
                    try b.blockCopy(BlockCopy(rows: rows, cols: cols, batch: batch,
                                              from: GEMMOperand(source, offset: 5, ld: sourceLD, batchStride: sourceStride),
                                              to: GEMMOperand(destination, offset: 2, ld: destinationLD, batchStride: destinationStride)))
                    return try destination.toArray()
                }
                return Comparison.exact(device, cpu, label: "\(batch) × \(rows)×\(cols)")
            })
        },
        Check(name: "add_bias") { s in
            .compared(try [(1, 1), (37, 45), (5, 300)].map { rows, cols in
                let (device, cpu) = try s.both { b -> [Float] in
                    let y = try b.upload(randomValues(rows * cols, seed: 6000), shape: [rows, cols])
                    try b.addBias(BiasAdd(bias: b.upload(randomValues(cols, seed: 6001), shape: [cols]), y: y))
                    return try y.toArray()
                }
                return Comparison.exact(device, cpu, label: "[\(rows), \(cols)]")
            })
        },
        Check(name: "axpy") { s in
            // y + alpha·x: one product and one add, which a device may fuse: 2u of |y| + |alpha·x|.
            .compared(try elementCounts.map { count in
                let (x, y0, alpha) = (randomValues(count, seed: 6100), randomValues(count, seed: 6101), Float(-0.3))
                let (device, cpu) = try s.both { b -> [Float] in
                    let y = try b.upload(y0, shape: [count])
                    try b.axpy(Axpy(alpha: alpha, x: b.upload(x, shape: [count]), y: y))
                    return try y.toArray()
                }
                let magnitude = zip(x, y0).map { abs($1) + abs(alpha * $0) }
                return Comparison.measure(device, cpu, magnitude: .componentwise(magnitude), tolerance: 4 * unitRoundoff,
                                          label: "\(count) elements")
            })
        },
        Check(name: "memory") { s in
            // fill, copy, zeros, typed bytes round trips, host-resident tensors and the transfer queue.
            let values = randomValues(1001, seed: 6200)
            let (device, cpu) = try s.both { b -> [[Float]] in
                let filled = try b.empty([1001])
                try b.fill(filled, with: -2.5)
                let copied = try b.empty([1001])
                try b.copy(b.upload(values, shape: [1001]), to: copied)
                let host = try b.hostResidentZeros([1001])
                let transfer = try b.beginTransfer([(source: copied, destination: host)])
                try b.awaitTransfer(transfer)
                let back = try b.empty([1001])
                let returning = try b.beginTransfer([(source: host, destination: back)])
                try b.awaitTransfer(returning)
                let half = try b.upload(rounded(values, to: .float16), as: .float16, shape: [1001])
                var bytes = try b.downloadBytes(half)
                let reuploaded = try bytes.withUnsafeMutableBytes { try b.upload(bytes: UnsafeRawBufferPointer($0), dtype: .float16, shape: [1001]) }
                return [try filled.toArray(), try copied.toArray(), try back.toArray(), try b.zeros([1001]).toArray(),
                        try b.converted(reuploaded, to: .float32).toArray()]
            }
            return .compared(["fill", "copy", "transfer to host memory and back", "zeros", "float16 bytes"].enumerated().map {
                Comparison.exact(device[$0.offset], cpu[$0.offset], label: $0.element)
            })
        },
    ]

    static var elementwiseChecks: [Check] {
        activationChecks + [adamWCheck, dropoutCheck] + embeddingChecks + [convertCheck, reductionCheck] + movementChecks
    }
}
