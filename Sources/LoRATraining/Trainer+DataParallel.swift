// Data-parallel training: every rank holds the whole model, takes its rows of each global batch, and the ranks
// average their gradients before the identical update each then applies.
//
// The exchange follows llm.c's layout: one flat gradient buffer of every trainable element, each parameter a range
// of it at a fixed offset (parameter order), plus three trailing slots:
//     [ grad(p0) | grad(p1) | ... | grad(pK-1) | loss·n | n | stop ]      (float32, Σ|p| + 3 elements)
// Each rank gathers its gradients into that buffer on the device (block copies), reads it once, multiplies the
// gradient part by n (its scored predictions: its loss is a mean over n), and one MPI_Allreduce(SUM) gives
// Σ n_r·g_r, Σ n_r·loss_r, Σ n_r and whether any rank was asked to stop. Dividing by N = Σ n_r gives the gradient
// and loss of the mean over every scored prediction of the global batch: what one process computes on that batch,
// up to float summation order. The buffer goes back to the device once and is scattered into the gradients; the
// gradient norm, clipping and the optimizer then run unchanged, on identical values on every rank.
import Foundation
import LoRAModels
import LoRANN
import LoRARuntime

/// The flat buffer gradients are exchanged through (one per trainer, sized on first use).
final class GradientExchange {
    /// Each parameter's first element in the flat buffer; the last entry is the gradient part's length.
    let offsets: [Int]
    /// The gradients side by side on the device.
    let device: Tensor
    /// The host copy the all-reduce runs on: the gradients, then loss·n, n, stop.
    var host: [Float]

    init(parameters: [TrainableParameter], backend: any Backend) throws {
        var offsets = [0]
        for p in parameters { offsets.append(offsets.last! + p.gradient.count) }
        self.offsets = offsets
        device = try backend.empty([offsets.last!])
        host = [Float](repeating: 0, count: offsets.last! + 3)
    }

    var gradientCount: Int { offsets.last! }
}

extension Trainer {
    /// Rows `rank·b ..< (rank+1)·b` of the global batch (b = the global batch / size), as one process with the global
    /// batch would take them; fewer, or none, in an epoch's short last batch.
    static func rows(of batch: LabeledBatch, rank: Int, size: Int, perRank: Int) -> LabeledBatch {
        let range = min(batch.tokens.count, rank * perRank)..<min(batch.tokens.count, (rank + 1) * perRank)
        let tokens = Array(batch.tokens[range]), labels = batch.labels.map { Array($0[range]) }
        // Packed rows keep their windows' example boundaries.
        let segments = batch.segments.map { PackedSegments(Array($0.lengths[range])) }
        return LabeledBatch(tokens: tokens, labels: labels, realTokens: tokens.reduce(0) { $0 + $1.count }, segments: segments)
    }

    /// Predictions a batch scores: position t against label t + 1, -100 ignored, and in packed rows no example's last
    /// token against the next example's first (the model's loss counts the same).
    static func scoredPredictions(_ batch: LabeledBatch) -> Int {
        let labels = batch.labels ?? batch.tokens
        let ends = batch.segments?.endsExample
        var count = 0, flat = 0
        for row in labels {
            for t in 0..<row.count {
                if t + 1 < row.count, row[t + 1] != -100, ends?[flat] != true { count += 1 }
                flat += 1
            }
        }
        return count
    }

    /// One data-parallel step's forward and backward on this rank's rows, then the all-reduce; returns the global
    /// mean loss and whether any rank asked to stop. The gradients hold the global mean's afterwards.
    func dataParallelLoss(_ global: LabeledBatch, group: any ProcessGroup, stopRequested: Bool) throws -> (loss: Float, stop: Bool) {
        let local = Self.rows(of: global, rank: group.rank, size: group.size, perRank: data.batch / group.size)
        let predictions = local.tokens.isEmpty ? 0 : Self.scoredPredictions(local)
        // A rank whose rows score nothing (all labels -100, or no rows in a short last batch) adds zero gradients
        // with weight 0: the model's loss refuses such a batch, and skipping it changes no sum.
        // Rows are flattened [row, position] in the model: this rank's first row starts at that index of the global batch.
        let firstRow = min(global.tokens.count, group.rank * (data.batch / group.size)) * (global.tokens.first?.count ?? 0)
        var loss: Float = 0
        if predictions > 0 {
            loss = try withDropoutRows(from: firstRow) {
                try model.loss(local.tokens, labels: local.labels, segments: local.segments, gradients: true).loss
            }
        } else {
            for (_, layer) in model.loraLayers { layer.skipDropoutMask() }
        }
        if timesWaitApart {
            // A one-element all-reduce returns once every rank has finished its backward: the time to there is waiting
            // for the slowest rank, not exchanging.
            let waitStart = DispatchTime.now().uptimeNanoseconds
            var token: [Float] = [0]
            try token.withUnsafeMutableBufferPointer { try group.allReduceSum($0) }
            waitSeconds += Double(DispatchTime.now().uptimeNanoseconds - waitStart) / 1e9
        }
        let start = DispatchTime.now().uptimeNanoseconds
        let exchange = try gradientExchange()
        let backend = model.backend
        let parameters = optimizer.parameters
        for (index, p) in parameters.enumerated() {
            try backend.blockCopy(BlockCopy(rows: 1, cols: p.gradient.count, from: GEMMOperand(p.gradient, ld: p.gradient.count),
                                            to: GEMMOperand(exchange.device, offset: exchange.offsets[index], ld: p.gradient.count)))
        }
        let n = exchange.gradientCount
        try exchange.host.withUnsafeMutableBytes { try backend.downloadBytes(exchange.device, into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<(4 * n)])) }
        let weight = Float(predictions)
        exchange.host.withUnsafeMutableBufferPointer { buffer in
            for i in 0..<n { buffer[i] *= weight }
            (buffer[n], buffer[n + 1], buffer[n + 2]) = (loss * weight, weight, stopRequested ? 1 : 0)
        }
        try exchange.host.withUnsafeMutableBufferPointer { try group.allReduceSum($0) }
        let total = exchange.host[n + 1]
        guard total > 0 else { throw TrainingError.invalidSetup("step \(step + 1): no rank's rows have a token to score") }
        let scale = 1 / total
        exchange.host.withUnsafeMutableBufferPointer { buffer in for i in 0..<n { buffer[i] *= scale } }
        let reduced = try exchange.host.withUnsafeBytes {
            try backend.upload(bytes: UnsafeRawBufferPointer(rebasing: $0[0..<(4 * n)]), dtype: .float32, shape: [n])
        }
        for (index, p) in parameters.enumerated() {
            try backend.blockCopy(BlockCopy(rows: 1, cols: p.gradient.count,
                                            from: GEMMOperand(reduced, offset: exchange.offsets[index], ld: p.gradient.count),
                                            to: GEMMOperand(p.gradient, ld: p.gradient.count)))
        }
        communicationSeconds += Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        return (exchange.host[n] / total, exchange.host[n + 2] > 0)
    }

    /// Runs `body` (this rank's forward and backward on its rows) with every adapter's dropout mask taken from row
    /// `firstRow` of the global batch's mask on: a mask is a hash of (seed, element index), and every rank keeps the
    /// same seeds, so rank r's rows get exactly the mask one process with the global batch gives them.
    func withDropoutRows<T>(from firstRow: Int, _ body: () throws -> T) throws -> T {
        let layers = model.loraLayers.map(\.layer)
        for layer in layers { layer.dropoutRowOffset = firstRow }
        defer { for layer in layers { layer.dropoutRowOffset = 0 } }
        return try body()
    }

    /// The eval loss under a group: each rank scores every size-th sequence (from its rank on), and one all-reduce
    /// of (Σ loss·n, Σ n) gives the token-weighted mean over all of them on every rank.
    func dataParallelEvaluate(group: any ProcessGroup) throws -> Float? {
        guard let evalData, !evalData.isEmpty else { return nil }
        let mine = Array(stride(from: group.rank, to: evalData.count, by: group.size))
        var sums = [0.0, 0.0]
        if !mine.isEmpty {
            let sequences = mine.map { evalData[$0] }
            let localBatch = max(1, data.batch / group.size)
            if let evalLabels {
                let (loss, count) = try model.meanLoss(sequences, labels: mine.map { evalLabels[$0] }, batch: localBatch, padID: data.padID)
                if count > 0 { sums = [loss * Double(count), Double(count)] }
            } else {
                let count = sequences.reduce(0) { $0 + $1.count - 1 }
                sums = [try model.meanLoss(sequences, batch: localBatch) * Double(count), Double(count)]
            }
        }
        try sums.withUnsafeMutableBufferPointer { try group.allReduceSum($0) }
        return sums[1] > 0 ? Float(sums[0] / sums[1]) : .nan
    }

    /// Makes every rank's training state rank `root`'s: trainable values, optimizer moments and step, data position,
    /// dropout seeds, the best eval so far. Run once before training (rank 0 may have resumed from a checkpoint, and
    /// every rank must start from the same adapter).
    public func synchronizeState(root: Int = 0) throws {
        guard let group else { return }
        let backend = model.backend
        var tensors: [Tensor] = []
        for (index, p) in optimizer.parameters.enumerated() {
            tensors.append(p.value)
            if optimizer.kind.keepsMoments { tensors += [optimizer.moments[index].m, optimizer.moments[index].v] }
        }
        var values: [Float] = []
        if group.rank == root { for t in tensors { values += try t.toArray() } } else {
            values = [Float](repeating: 0, count: tensors.reduce(0) { $0 + $1.count })
        }
        try values.withUnsafeMutableBytes { try group.broadcast($0, root: root) }
        if group.rank != root {
            var start = 0
            for t in tensors {
                try backend.copy(backend.upload(Array(values[start..<(start + t.count)]), shape: t.shape), to: t)
                start += t.count
            }
        }
        let layers = model.loraLayers
        var words: [UInt64] = [UInt64(step), UInt64(optimizer.step), UInt64(data.epoch), UInt64(data.index),
                               UInt64(bitPattern: Int64(bestEval?.step ?? -1)), UInt64((bestEval?.loss ?? 0).bitPattern),
                               UInt64(evaluationsWithoutImprovement)] + layers.map(\.layer.nextDropoutSeed)
        try words.withUnsafeMutableBytes { try group.broadcast($0, root: root) }
        step = Int(words[0])
        optimizer.restore(step: Int(words[1]))
        (data.epoch, data.index) = (Int(words[2]), Int(words[3]))
        let bestStep = Int(Int64(bitPattern: words[4]))
        bestEval = bestStep >= 0 ? (bestStep, Float(bitPattern: UInt32(words[5]))) : nil
        evaluationsWithoutImprovement = Int(words[6])
        for (i, (_, layer)) in layers.enumerated() { layer.nextDropoutSeed = words[7 + i] }
        try backend.synchronize()
    }

    /// The exchange buffer, made on first use.
    func gradientExchange() throws -> GradientExchange {
        if let exchange { return exchange }
        let made = try GradientExchange(parameters: optimizer.parameters, backend: model.backend)
        exchange = made
        return made
    }
}

extension Trainer {
    /// Everything that must be the same on every rank of a job, by name: the run's settings (model, data files and
    /// their fingerprint, the global batch), what is trained, the training options, the trainable tensors' shapes and
    /// the eval data's size. `ProcessGroup.requireSameSettings` compares them across ranks before training.
    public var jobSettings: [String: String] {
        var result = runSettings
        result["trains"] = trainedWhat
        for child in Mirror(reflecting: options).children {
            if let label = child.label { result["the training option \(label)"] = String(describing: child.value) }
        }
        result["the global batch"] = String(data.batch)
        result["the trainable tensors"] = optimizer.parameters.map { "\($0.name)\($0.value.shape)" }.joined(separator: ",")
        result["the eval data"] = evalData.map { "\($0.count) sequences of \($0.reduce(0) { $0 + $1.count }) tokens" } ?? "none"
        return result
    }
}
