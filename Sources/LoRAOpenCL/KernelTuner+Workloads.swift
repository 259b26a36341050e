// What `lora tune` runs per kernel family: each workload uploads its inputs once to a backend and then runs one op
// (or a forward and backward pair) that is idempotent (no accumulation, outputs apart from inputs), so its outputs
// after any run can be compared with the CPU backend's. Inputs are fixed pseudo-random values.
import LoRARuntime

extension KernelTuner {
    /// An op at one shape, on a backend.
    struct Workload {
        let name: String
        let prepare: (any Backend) throws -> Prepared
    }

    /// A workload's inputs on one backend: `run` enqueues it, `outputs` reads back what it wrote.
    struct Prepared {
        let run: () throws -> Void
        let outputs: () throws -> [[Float]]
    }

    /// Values in [-bound, bound) from a 64-bit LCG (the same on every run and backend).
    static func values(_ count: Int, seed: UInt64, bound: Float = 1) -> [Float] {
        var state = seed &* 6364136223846793005 &+ 1442695040888963407
        return (0..<count).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return (Float(state >> 40) / Float(1 << 24) * 2 - 1) * bound
        }
    }

    func workloads(_ family: String) throws -> [Workload] {
        switch family {
        case "gemm": return shapes.gemm.map(Self.gemm)
        case "softmax": return [Self.softmax(rows: shapes.softmax.rows, cols: shapes.softmax.cols)]
        case "layernorm": return [Self.layerNorm(rows: shapes.norm.rows, cols: shapes.norm.cols)]
        case "rmsnorm": return [Self.rmsNorm(rows: shapes.norm.rows, cols: shapes.norm.cols)]
        case "cross_entropy": return [Self.crossEntropy(rows: shapes.crossEntropy.rows, classes: shapes.crossEntropy.classes)]
        case "lora": return [Self.lora(shapes.lora)]
        default: preconditionFailure("no tuning workload for kernel family \(family)")
        }
    }

    /// C[m, n] = A[m, k]·B[k, n].
    static func gemm(_ shape: (m: Int, n: Int, k: Int)) -> Workload {
        Workload(name: "gemm \(shape.m)×\(shape.n)×\(shape.k)") { b in
            let a = try b.upload(values(shape.m * shape.k, seed: 1), shape: [shape.m, shape.k])
            let bm = try b.upload(values(shape.k * shape.n, seed: 2), shape: [shape.k, shape.n])
            let c = try b.empty([shape.m, shape.n])
            let op = try GEMM(a: a, b: bm, c: c)
            return Prepared(run: { try b.gemm(op) }, outputs: { [try c.toArray()] })
        }
    }

    /// Causal softmax forward, then its backward, over [rows, cols] (rows a multiple of cols: heads × queries).
    static func softmax(rows: Int, cols: Int) -> Workload {
        Workload(name: "softmax [\(rows), \(cols)]") { b in
            let shape = [rows / cols, cols, cols]
            let x = try b.upload(values(rows * cols, seed: 3, bound: 4), shape: shape), y = try b.empty(shape)
            let dy = try b.upload(values(rows * cols, seed: 4), shape: shape), dx = try b.empty(shape)
            let forward = try Softmax(x: x, y: y, scale: 0.125, causal: true)
            let backward = try SoftmaxBackward(y: y, dy: dy, dx: dx, scale: 0.125, causal: true)
            return Prepared(run: { try b.softmax(forward); try b.softmaxBackward(backward) },
                            outputs: { [try y.toArray(), try dx.toArray()] })
        }
    }

    /// Layer norm forward with statistics, then dx.
    static func layerNorm(rows: Int, cols: Int) -> Workload {
        Workload(name: "layer norm [\(rows), \(cols)]") { b in
            let x = try b.upload(values(rows * cols, seed: 5, bound: 2), shape: [rows, cols])
            let gamma = try b.upload(values(cols, seed: 6), shape: [cols]), beta = try b.upload(values(cols, seed: 7), shape: [cols])
            let y = try b.empty([rows, cols]), mean = try b.empty([rows]), rstd = try b.empty([rows])
            let dy = try b.upload(values(rows * cols, seed: 8), shape: [rows, cols]), dx = try b.empty([rows, cols])
            let forward = try LayerNorm(x: x, gamma: gamma, beta: beta, y: y, mean: mean, rstd: rstd)
            let backward = try LayerNormBackward(x: x, gamma: gamma, mean: mean, rstd: rstd, dy: dy, dx: dx)
            return Prepared(run: { try b.layerNorm(forward); try b.layerNormBackward(backward) },
                            outputs: { [try y.toArray(), try dx.toArray()] })
        }
    }

    /// RMS norm forward with rstd, then dx.
    static func rmsNorm(rows: Int, cols: Int) -> Workload {
        Workload(name: "RMS norm [\(rows), \(cols)]") { b in
            let x = try b.upload(values(rows * cols, seed: 9, bound: 2), shape: [rows, cols])
            let gamma = try b.upload(values(cols, seed: 10), shape: [cols])
            let y = try b.empty([rows, cols]), rstd = try b.empty([rows])
            let dy = try b.upload(values(rows * cols, seed: 11), shape: [rows, cols]), dx = try b.empty([rows, cols])
            let forward = try RMSNorm(x: x, gamma: gamma, y: y, rstd: rstd, epsilon: 1e-5)
            let backward = try RMSNormBackward(x: x, gamma: gamma, rstd: rstd, dy: dy, dx: dx)
            return Prepared(run: { try b.rmsNorm(forward); try b.rmsNormBackward(backward) },
                            outputs: { [try y.toArray(), try dx.toArray()] })
        }
    }

    /// Losses and the gradient of logits [rows, classes].
    static func crossEntropy(rows: Int, classes: Int) -> Workload {
        Workload(name: "cross-entropy [\(rows), \(classes)]") { b in
            let logits = try b.upload(values(rows * classes, seed: 12, bound: 8), shape: [rows, classes])
            let targets = try b.upload((0..<rows).map { Int32($0 * 7919 % classes) }, shape: [rows])
            let losses = try b.empty([rows]), dlogits = try b.empty([rows, classes])
            let op = try CrossEntropy(logits: logits, targets: targets, losses: losses, dlogits: dlogits, gradientScale: 1 / Float(rows))
            return Prepared(run: { try b.crossEntropy(op) }, outputs: { [try losses.toArray(), try dlogits.toArray()] })
        }
    }

    /// y = s·(x·Aᵀ)·Bᵀ through the fused kernel (y cleared first: the op adds into it).
    static func lora(_ shape: (rows: Int, inFeatures: Int, outFeatures: Int, rank: Int)) -> Workload {
        Workload(name: "lora [\(shape.rows), \(shape.inFeatures)] r=\(shape.rank)") { b in
            let x = try b.upload(values(shape.rows * shape.inFeatures, seed: 13), shape: [shape.rows, shape.inFeatures])
            let a = try b.upload(values(shape.rank * shape.inFeatures, seed: 14), shape: [shape.rank, shape.inFeatures])
            let bm = try b.upload(values(shape.outFeatures * shape.rank, seed: 15), shape: [shape.outFeatures, shape.rank])
            var y = try b.zeros([shape.rows, shape.outFeatures], dtype: .float32)
            return Prepared(run: {
                y = try b.zeros([shape.rows, shape.outFeatures], dtype: .float32)
                let op = try LoRAProjection(x: x, a: a, b: bm, scale: 2, y: y)
                if let cl = b as? OpenCLBackend { try cl.loraProject(op, path: .fused) } else { try b.loraProject(op) }
            }, outputs: { [try y.toArray()] })
        }
    }
}
