// `lora bench gemm|softmax|lora|multi-lora|ops|nf4|all`: per case, the median time and GFLOP/s (or GB/s for memory-bound ops), and
// with `--compare openblas` OpenBLAS's figure and the ratio ours/OpenBLAS for the same case in the same run
// (`nf4`'s peer is always our float32 GEMM of the same shape).
// Speed is reported here, never asserted in tests: machines are shared and noisy, so compare ratios.
import ArgumentParser
import Foundation
import SwiftLoRA

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Measure the runtime's ops (median time, GFLOP/s or GB/s).",
        subcommands: [GEMMBench.self, SoftmaxBench.self, LoRABench.self, MultiLoRABench.self, OpsBench.self, NF4Bench.self, TrainBench.self,
                      GenerateBench.self, AllBench.self])
}

struct BenchOptions: ParsableArguments {
    @OptionGroup var device: DeviceOptions
    @Option(help: "Comma-separated cases: N (square) or MxNxK for gemm, ROWSxCOLS for softmax and ops, TOKENSxWIDTHxRANK for lora.")
    var sizes: String?
    @Option(help: "Also measure a peer in the same run and print the ratio ours/peer: openblas.")
    var compare: String?
    @Flag(help: "One JSON object per case and line, nothing else on stdout.")
    var json = false
    @Option(help: "Timed seconds per case, at least (after one warm-up run).")
    var minTime = 0.5

    func validate() throws {
        if let compare, compare != "openblas" {
            throw ValidationError("--compare takes openblas, not '\(compare)'")
        }
        guard minTime > 0, minTime <= 60 else { throw ValidationError("--min-time must be in (0, 60] seconds") }
    }

    /// The sizes given, or `defaults`, each parsed into `dimensions` numbers (a single N means N in each).
    func cases(defaults: String, dimensions: Int, op: String) throws -> [[Int]] {
        try (sizes ?? defaults).split(separator: ",").map { item in
            let parts = item.lowercased().split(separator: "x", omittingEmptySubsequences: false).map { Int($0) }
            guard parts.allSatisfy({ ($0 ?? 0) > 0 }), parts.count == 1 || parts.count == dimensions else {
                throw ValidationError("--sizes: '\(item)' is not a size for \(op) (N or \(dimensions) numbers joined by x)")
            }
            return parts.count == 1 ? Array(repeating: parts[0]!, count: dimensions) : parts.map { $0! }
        }
    }
}

/// Everything a bench case needs: the device, the peer, and where results go.
struct BenchContext {
    let backend: any Backend
    let options: BenchOptions
    let openBLAS: OpenBLAS?

    init(_ options: BenchOptions) throws {
        self.options = options
        backend = try options.device.select(announce: !options.json)
        KernelParametersInfo.announce(backend, json: options.json)
        openBLAS = options.compare == "openblas"
            ? try OpenBLAS(threads: ThreadPool.configuredThreads()) : nil
        if !options.json, let openBLAS {
            print("peer: OpenBLAS (\(openBLAS.library), \(openBLAS.core) kernels), \(ThreadPool.configuredThreads()) threads")
        }
    }

    /// Medians of `ours` and `peer` (each over at least 3 runs and `--min-time` seconds of ours, after one
    /// warm-up run each), run alternately so that both see the same machine (load on a shared host
    /// drifts; back-to-back blocks would charge the drift to one side).
    func medians(_ ours: () throws -> Void, _ peer: (() throws -> Void)?) throws -> (ours: Double, peer: Double?) {
        func time(_ body: () throws -> Void) throws -> Double {
            let t0 = DispatchTime.now().uptimeNanoseconds
            try body()
            return Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        }
        try ours()
        try peer?()
        var (oursTimes, peerTimes): ([Double], [Double]) = ([], [])
        var elapsed = 0.0
        while oursTimes.count < 3 || (elapsed < options.minTime && oursTimes.count < 1000) {
            oursTimes.append(try time(ours))
            elapsed += oursTimes.last!
            if let peer { peerTimes.append(try time(peer)) }
        }
        return (Self.median(oursTimes), peerTimes.isEmpty ? nil : Self.median(peerTimes))
    }

    /// Medians of several bodies run in turn (each over at least 3 runs and `--min-time` seconds of the first,
    /// after one warm-up run each), for ratios between them on the same machine state.
    func medians(_ bodies: [() throws -> Void]) throws -> [Double] {
        var times = bodies.map { _ in [Double]() }
        for body in bodies { try body() }
        var elapsed = 0.0
        while times[0].count < 3 || (elapsed < options.minTime && times[0].count < 1000) {
            for (i, body) in bodies.enumerated() {
                let t0 = DispatchTime.now().uptimeNanoseconds
                try body()
                times[i].append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
            }
            elapsed += times[0].last!
        }
        return times.map(Self.median)
    }

    static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        let mid = sorted.count / 2
        return sorted.count % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
    }

    /// A tensor of uniform random values on the device, and the same values on the host.
    func random(_ shape: [Int], seed: UInt64) throws -> (Tensor, [Float]) {
        var generator = SeededGenerator(seed: seed)
        let values = (0..<shape.reduce(1, *)).map { _ in Float.random(in: -1...1, using: &generator) }
        return (try backend.upload(values, shape: shape), values)
    }

    func report(_ result: BenchResult) throws {
        if options.json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            var result = result
            result.kernelParameters = KernelParametersInfo(backend)
            print(String(decoding: try encoder.encode(result), as: UTF8.self))
        } else {
            print(result.line)
        }
    }
}

/// One measured case. Field names are the JSON contract.
struct BenchResult: Encodable {
    var op: String
    var device: String
    var m: Int?, n: Int?, k: Int?
    var rows: Int?, cols: Int?, rank: Int?
    var seconds: Double
    var gflops: Double?
    var gbps: Double?
    var peer: String?
    var peerSeconds: Double?
    var peerGflops: Double?
    var peerGbps: Double?
    var ratio: Double?
    /// The OpenCL kernels' parameters (KernelParametersInfo.swift); nil on the CPU.
    var kernelParameters: KernelParametersInfo?

    enum CodingKeys: String, CodingKey {
        case op, device, m, n, k, rows, cols, rank, seconds, gflops, gbps, peer, ratio
        case kernelParameters = "kernel_parameters"
        case peerSeconds = "peer_seconds", peerGflops = "peer_gflops", peerGbps = "peer_gbps"
    }

    /// This result with OpenBLAS's time for the same work, when it was measured.
    func comparing(openBLAS peerSeconds: Double?, flops: Double) -> BenchResult {
        guard let peerSeconds else { return self }
        var result = self
        (result.peer, result.peerSeconds, result.peerGflops) = ("openblas", peerSeconds, flops / peerSeconds / 1e9)
        result.ratio = peerSeconds / seconds
        return result
    }

    var line: String {
        let shape = [m, n, k].allSatisfy({ $0 != nil }) ? "\(m!)x\(n!)x\(k!)"
            : [rows, cols].compactMap { $0 }.map(String.init).joined(separator: "x") + (rank.map { " r=\($0)" } ?? "")
        var text = "\(op.padding(toLength: 9, withPad: " ", startingAt: 0)) \(shape.padding(toLength: 16, withPad: " ", startingAt: 0))"
            + String(format: " %9.3f ms", seconds * 1e3)
        if let gflops { text += String(format: " %8.1f GFLOP/s", gflops) }
        if let gbps { text += String(format: " %8.1f GB/s", gbps) }
        if let peer, let peerSeconds {
            text += "   \(peer)" + String(format: " %9.3f ms", peerSeconds * 1e3)
            if let peerGflops { text += String(format: " %8.1f GFLOP/s", peerGflops) }
            if let peerGbps { text += String(format: " %8.1f GB/s", peerGbps) }
        }
        if let ratio { text += String(format: "   ratio %.2f", ratio) }
        return text
    }
}

struct GEMMBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "gemm", abstract: "C = A·B, fp32 math, row-major.")
    static let defaultSizes = "256,512,1024,2048,512x4096x16,512x16x4096,2048x2048x64"
    @OptionGroup var options: BenchOptions
    @Option(help: "B's dtype (a weight kept in its file's dtype): float32, bfloat16 or float16. A and C are float32.")
    var dtype = "float32"
    @Flag(help: "B stored [n, k] and used transposed, as a linear layer's x·Wᵀ with W [out, in].")
    var transposeB = false

    func validate() throws {
        guard let type = DType(rawValue: dtype), type.isFloatingPoint else {
            throw ValidationError("--dtype takes float32, bfloat16 or float16, not '\(dtype)'")
        }
    }

    func run() throws {
        let context = try BenchContext(options)
        for size in try options.cases(defaults: Self.defaultSizes, dimensions: 3, op: "gemm") {
            try context.report(Self.measure(m: size[0], n: size[1], k: size[2], typeB: DType(rawValue: dtype) ?? .float32,
                                            transposeB: transposeB, context))
        }
    }

    static func measure(m: Int, n: Int, k: Int, typeB: DType = .float32, transposeB: Bool = false,
                        _ context: BenchContext) throws -> BenchResult {
        let backend = context.backend
        let (a, hostA) = try context.random([m, k], seed: 1)
        let (floatB, hostB) = try context.random(transposeB ? [n, k] : [k, n], seed: 2)
        let b = typeB == .float32 ? floatB : try backend.converted(floatB, to: typeB)
        let c = try backend.zeros([m, n])
        let op = try GEMM(a: a, b: b, c: c, transposeB: transposeB)
        var hostC = [Float](repeating: 0, count: context.openBLAS == nil ? 0 : m * n)
        let peer = context.openBLAS.map { blas in {
            blas.gemm(m: m, n: n, k: k, transposeA: false, transposeB: transposeB, a: hostA, b: hostB, c: &hostC)
        } }
        let (seconds, peerSeconds) = try context.medians({ try backend.gemm(op); try backend.synchronize() }, peer)
        let flops = 2 * Double(m) * Double(n) * Double(k)
        // The op is named with B's dtype when it is not float32 (the peer always runs float32 B).
        return BenchResult(op: typeB == .float32 ? "gemm" : typeB == .bfloat16 ? "gemm_bf16" : "gemm_f16", device: backend.name,
                           m: m, n: n, k: k, seconds: seconds, gflops: flops / seconds / 1e9)
            .comparing(openBLAS: peerSeconds, flops: flops)
    }
}

struct SoftmaxBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "softmax",
        abstract: "Row softmax; GB/s of its reads and writes next to a plain copy of the same buffers (the peer).")
    static let defaultSizes = "4096x1024,16384x128"
    @OptionGroup var options: BenchOptions

    func run() throws {
        let context = try BenchContext(options)
        for size in try options.cases(defaults: Self.defaultSizes, dimensions: 2, op: "softmax") {
            try context.report(Self.measure(rows: size[0], cols: size[1], context))
        }
    }

    /// The peer is always the copy: softmax reads x and writes y once, so a copy's GB/s is its ceiling.
    static func measure(rows: Int, cols: Int, _ context: BenchContext) throws -> BenchResult {
        let backend = context.backend
        let (x, _) = try context.random([rows, cols], seed: 3)
        let y = try backend.zeros([rows, cols])
        let op = try Softmax(x: x, y: y)
        let bytes = 2 * Double(x.byteCount)
        let (seconds, copy) = try context.medians({ try backend.softmax(op); try backend.synchronize() },
                                                  { try backend.copy(x, to: y); try backend.synchronize() })
        return BenchResult(op: "softmax", device: backend.name, rows: rows, cols: cols, seconds: seconds,
                           gbps: bytes / seconds / 1e9, peer: "copy", peerSeconds: copy, peerGbps: bytes / copy! / 1e9,
                           ratio: copy! / seconds)
    }
}

struct LoRABench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lora", abstract: "The LoRA path y += s·(x·Aᵀ)·Bᵀ on a square layer; OpenBLAS peer: the same two GEMMs.")
    static let defaultSizes = "512x4096x16,2048x768x8,2048x2048x64"
    @OptionGroup var options: BenchOptions

    func run() throws {
        let context = try BenchContext(options)
        for size in try options.cases(defaults: Self.defaultSizes, dimensions: 3, op: "lora") {
            try context.report(Self.measure(tokens: size[0], width: size[1], rank: size[2], context))
        }
    }

    static func measure(tokens: Int, width: Int, rank: Int, _ context: BenchContext) throws -> BenchResult {
        let backend = context.backend
        let (x, hostX) = try context.random([tokens, width], seed: 4)
        let (a, hostA) = try context.random([rank, width], seed: 5)
        let (b, hostB) = try context.random([width, rank], seed: 6)
        let y = try backend.zeros([tokens, width])
        let op = try LoRAProjection(x: x, a: a, b: b, scale: 0.5, y: y)
        let withPeer = context.openBLAS != nil
        var u = [Float](repeating: 0, count: withPeer ? tokens * rank : 0)
        var hostY = [Float](repeating: 0, count: withPeer ? tokens * width : 0)
        let peer = context.openBLAS.map { blas in {
            blas.gemm(m: tokens, n: rank, k: width, transposeA: false, transposeB: true, a: hostX, b: hostA, c: &u)
            blas.gemm(m: tokens, n: width, k: rank, transposeA: false, transposeB: true, a: u, b: hostB, c: &hostY)
        } }
        let (seconds, peerSeconds) = try context.medians({ try backend.loraProject(op); try backend.synchronize() }, peer)
        let flops = 4 * Double(tokens) * Double(width) * Double(rank)
        return BenchResult(op: "lora", device: backend.name, rows: tokens, cols: width, rank: rank,
                           seconds: seconds, gflops: flops / seconds / 1e9)
            .comparing(openBLAS: peerSeconds, flops: flops)
    }
}

struct OpsBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ops",
        abstract: "The memory-bound training ops (layer norm, RMS norm, GELU, SwiGLU, RoPE, cross-entropy, AdamW, sum of squares); "
            + "GB/s next to a copy.")
    /// Activations of gpt2-small at 4×512 tokens, and its logits at 512 tokens.
    static let defaultSizes = "2048x768,512x50257"
    @OptionGroup var options: BenchOptions

    func run() throws {
        let context = try BenchContext(options)
        for size in try options.cases(defaults: Self.defaultSizes, dimensions: 2, op: "ops") {
            for result in try Self.measure(rows: size[0], cols: size[1], context) { try context.report(result) }
        }
    }

    /// Each op on [rows, cols], with the bytes it must move (in units of the tensor's size) and a copy of the
    /// same tensor as the peer: ratio = (op GB/s) / (copy GB/s).
    static func measure(rows: Int, cols: Int, _ context: BenchContext) throws -> [BenchResult] {
        let backend = context.backend
        let shape = [rows, cols]
        let (x, _) = try context.random(shape, seed: 7)
        let (dy, _) = try context.random(shape, seed: 8)
        let out = try backend.zeros(shape), out2 = try backend.zeros(shape)
        let (gamma, _) = try context.random([cols], seed: 9)
        let (beta, _) = try context.random([cols], seed: 10)
        let (mean, rstd) = (try backend.zeros([rows]), try backend.zeros([rows]))
        let targets = try backend.upload((0..<rows).map { Int32($0 * 7 % cols) }, shape: [rows])
        let (losses, result) = (try backend.zeros([rows]), try backend.zeros([1]))
        let (m, v) = (try backend.zeros(shape), try backend.zeros(shape))
        let (up, _) = try context.random(shape, seed: 11)
        let out3 = try backend.zeros(shape)
        try backend.layerNorm(LayerNorm(x: x, gamma: gamma, beta: beta, y: out, mean: mean, rstd: rstd))
        try backend.rmsNorm(RMSNorm(x: x, gamma: gamma, y: out, rstd: rstd, epsilon: 1e-6))
        var cases: [(String, Double, () throws -> Void)] = [
            ("layernorm", 2, { try backend.layerNorm(LayerNorm(x: x, gamma: gamma, beta: beta, y: out, mean: mean, rstd: rstd)) }),
            ("ln_bwd", 3, { try backend.layerNormBackward(LayerNormBackward(x: x, gamma: gamma, mean: mean, rstd: rstd, dy: dy, dx: out2)) }),
            ("rmsnorm", 2, { try backend.rmsNorm(RMSNorm(x: x, gamma: gamma, y: out, rstd: rstd, epsilon: 1e-6)) }),
            ("rms_bwd", 3, { try backend.rmsNormBackward(RMSNormBackward(x: x, gamma: gamma, rstd: rstd, dy: dy, dx: out2)) }),
            ("gelu", 2, { try backend.gelu(GELU(x: x, y: out)) }),
            ("gelu_bwd", 3, { try backend.geluBackward(GELUBackward(x: x, dy: dy, dx: out2)) }),
            ("swiglu", 3, { try backend.swiglu(SwiGLU(gate: x, up: up, y: out)) }),
            ("swiglu_bwd", 5, { try backend.swigluBackward(SwiGLUBackward(gate: x, up: up, dy: dy, dGate: out2, dUp: out3)) }),
            ("xent", 2, { try backend.crossEntropy(CrossEntropy(logits: x, targets: targets, losses: losses, dlogits: out2, gradientScale: 0.01)) }),
            ("adamw", 7, { try backend.adamW(AdamW(parameters: out, gradients: dy, firstMoment: m, secondMoment: v, learningRate: 1e-4, step: 1)) }),
            ("sumsq", 1, { try backend.reduce(Reduction(.sumOfSquares, of: x, into: result)) }),
        ]
        // RoPE in place on rows of heads of 128 (or 64, or one head of the whole row), each row its own position.
        if let headDim = [128, 64, cols].first(where: { cols % $0 == 0 && $0 % 2 == 0 }) {
            let (cos, _) = try context.random([rows, headDim / 2], seed: 12)
            let (sin, _) = try context.random([rows, headDim / 2], seed: 13)
            let rope = try RoPE(input: out, output: out, heads: cols / headDim, headDim: headDim, sequenceLength: rows,
                                start: 0, cos: cos, sin: sin)
            cases.insert(("rope", 2, { try backend.rope(rope) }), at: 8)
        }
        let tensorBytes = Double(x.byteCount)
        return try cases.map { name, traffic, body in
            let (seconds, copy) = try context.medians({ try body(); try backend.synchronize() },
                                                      { try backend.copy(x, to: out2); try backend.synchronize() })
            return BenchResult(op: name, device: backend.name, rows: rows, cols: cols, seconds: seconds,
                               gbps: traffic * tensorBytes / seconds / 1e9, peer: "copy", peerSeconds: copy,
                               peerGbps: 2 * tensorBytes / copy! / 1e9, ratio: traffic * copy! / (2 * seconds))
        }
    }
}

struct NF4Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nf4",
        abstract: "The NF4 quantized GEMM, forward y = x·Wᵀ and input gradient dx = dy·W with W [N, K] (double-quantized, "
            + "blocksize 64), next to the float GEMM with W in float32 (the peer: ratio = its time / ours) and in bfloat16.")
    /// smollm-135m's linears (hidden 576, k/v 192, MLP 1536) at 4×128 tokens.
    static let defaultSizes = "512x576x576,512x192x576,512x1536x576,512x576x1536"
    @OptionGroup var options: BenchOptions

    func run() throws {
        let context = try BenchContext(options)
        for size in try options.cases(defaults: Self.defaultSizes, dimensions: 3, op: "nf4 (MxNxK, W [N, K])") {
            for result in try Self.measure(m: size[0], n: size[1], k: size[2], context) { try context.report(result) }
        }
    }

    /// bitsandbytes' NF4 code book (a file's `quant_map`).
    static let codeBook: [Float] = [
        -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
        -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
        0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
    ]

    /// A double-quantized NF4 weight `[rows, columns]` of random codes (the speed does not depend on the values).
    static func randomWeight(rows: Int, columns: Int, on backend: any Backend) throws -> NF4Weight {
        var generator = SeededGenerator(seed: 12)
        let blocks = (rows * columns + 63) / 64, groups = (blocks + 255) / 256
        func bytes(_ count: Int) throws -> Tensor {
            let values = (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
            return try values.withUnsafeBytes { try backend.upload(bytes: $0, dtype: .uint8, shape: [count]) }
        }
        let nestedMap = (0..<256).map { Float($0 - 128) / 128 }
        let scales = (0..<groups).map { _ in Float.random(in: 0.01...0.1, using: &generator) }
        return try NF4Weight(
            rows: rows, columns: columns, blocksize: 64, codes: try bytes((rows * columns + 1) / 2),
            map: try backend.upload(codeBook, shape: [16]),
            absmax: .doubleQuantized(codes: try bytes(blocks), map: try backend.upload(nestedMap, shape: [256]),
                                     scales: try backend.upload(scales, shape: [groups]), offset: 0.05, blocksize: 256))
    }

    /// Forward and input gradient for W `[n, k]`, each as NF4, float32 and bfloat16 W, run in turn.
    static func measure(m: Int, n: Int, k: Int, _ context: BenchContext) throws -> [BenchResult] {
        let backend = context.backend
        let nf4 = try randomWeight(rows: n, columns: k, on: backend)
        let (float32, _) = try context.random([n, k], seed: 2)
        let bfloat16 = try backend.converted(float32, to: .bfloat16)
        var results: [BenchResult] = []
        for transposeW in [true, false] {
            // Forward: [m, k] → [m, n]; input gradient: [m, n] → [m, k].
            let (inner, outer) = transposeW ? (k, n) : (n, k)
            let (a, _) = try context.random([m, inner], seed: 3)
            let c = try backend.zeros([m, outer])
            let quantized = try QuantizedGEMM(a: a, weight: nf4, c: c, transposeW: transposeW)
            let dense = try GEMM(a: a, b: float32, c: c, transposeB: transposeW)
            let half = try GEMM(a: a, b: bfloat16, c: c, transposeB: transposeW)
            let times = try context.medians([
                { try backend.quantizedGEMM(quantized); try backend.synchronize() },
                { try backend.gemm(dense); try backend.synchronize() },
                { try backend.gemm(half); try backend.synchronize() },
            ])
            let flops = 2 * Double(m) * Double(n) * Double(k)
            let direction = transposeW ? "fwd" : "bwd"
            for (name, seconds) in [("nf4_" + direction, times[0]), ("bf16_" + direction, times[2])] {
                results.append(BenchResult(op: name, device: backend.name, m: m, n: outer, k: inner, seconds: seconds,
                                           gflops: flops / seconds / 1e9, peer: "gemm", peerSeconds: times[1],
                                           peerGflops: flops / times[1] / 1e9, ratio: times[1] / seconds))
            }
        }
        return results
    }
}

struct AllBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "all", abstract: "gemm, softmax, lora, ops and nf4 at their default sizes.")
    @OptionGroup var options: BenchOptions

    func validate() throws {
        if options.sizes != nil { throw ValidationError("bench all runs each op's default sizes; use --sizes with one op") }
    }

    func run() throws {
        let context = try BenchContext(options)
        for size in try options.cases(defaults: GEMMBench.defaultSizes, dimensions: 3, op: "gemm") {
            try context.report(GEMMBench.measure(m: size[0], n: size[1], k: size[2], context))
        }
        for size in try options.cases(defaults: SoftmaxBench.defaultSizes, dimensions: 2, op: "softmax") {
            try context.report(SoftmaxBench.measure(rows: size[0], cols: size[1], context))
        }
        for size in try options.cases(defaults: LoRABench.defaultSizes, dimensions: 3, op: "lora") {
            try context.report(LoRABench.measure(tokens: size[0], width: size[1], rank: size[2], context))
        }
        for size in try options.cases(defaults: OpsBench.defaultSizes, dimensions: 2, op: "ops") {
            for result in try OpsBench.measure(rows: size[0], cols: size[1], context) { try context.report(result) }
        }
        for size in try options.cases(defaults: NF4Bench.defaultSizes, dimensions: 3, op: "nf4") {
            for result in try NF4Bench.measure(m: size[0], n: size[1], k: size[2], context) { try context.report(result) }
        }
    }
}
