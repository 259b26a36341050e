// NF4 test data: a random 4-bit NormalFloat weight (random codes, random absmax in either form, the padding nibble
// of an odd count random too) on any backend, its per-element reference dequantization written straight from
// NF4.swift's formula (rounded to the weight's dtype with Convert's scalar rules), and quantized GEMM problems with a
// Double reference; and bitsandbytes' own bfloat16/float16 dequantizations of the nf4 fixture cases.
import Foundation
import SwiftLoRA

/// bitsandbytes' NF4 code book (`quant_map` of an nf4 quant state).
public let nf4CodeBook: [Float] = [
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
]

/// A random NF4 weight `[rows, columns]`.
public struct NF4Case: Sendable, CustomStringConvertible {
    public var rows: Int, columns: Int, blocksize: Int
    /// Double quantization with groups of `nestedBlocksize` absmax codes; nil: float32 absmax.
    public var nestedBlocksize: Int?
    public var seed: UInt64
    /// The weight's quant_state dtype: what its elements dequantize to.
    public var dtype: DType

    public init(rows: Int, columns: Int, blocksize: Int = 64, nestedBlocksize: Int? = 256, seed: UInt64 = 1,
                dtype: DType = .float32) {
        (self.rows, self.columns, self.blocksize, self.nestedBlocksize, self.seed) = (rows, columns, blocksize, nestedBlocksize, seed)
        self.dtype = dtype
    }

    public var description: String {
        "[\(rows), \(columns)] blocksize \(blocksize) " + (nestedBlocksize.map { "double-quantized by \($0)" } ?? "float32 absmax")
            + (dtype == .float32 ? "" : " \(dtype)")
    }

    public var count: Int { rows * columns }
    public var blockCount: Int { (count + blocksize - 1) / blocksize }

    /// The stored values, as a file would hold them.
    public struct Stored: Sendable {
        public var codes: [UInt8], absmax: [Float]
        public var absmaxCodes: [UInt8], nestedMap: [Float], scales: [Float], offset: Float
    }

    public var stored: Stored {
        var g = SeededGenerator(seed: seed &* 7919 &+ 17)
        let codes = (0..<(count + 1) / 2).map { _ in UInt8.random(in: 0...255, using: &g) }
        let absmax = (0..<blockCount).map { _ in Float.random(in: 0.01...2, using: &g) }
        let absmaxCodes = (0..<blockCount).map { _ in UInt8.random(in: 0...255, using: &g) }
        let nestedMap = (0..<256).map { _ in Float.random(in: -1...1, using: &g) }.sorted()
        let groups = (blockCount + (nestedBlocksize ?? 1) - 1) / (nestedBlocksize ?? 1)
        let scales = (0..<groups).map { _ in Float.random(in: 0.001...0.5, using: &g) }
        return Stored(codes: codes, absmax: absmax, absmaxCodes: absmaxCodes, nestedMap: nestedMap, scales: scales,
                      offset: Float.random(in: 0.05...0.8, using: &g))
    }

    /// The weight on `backend`.
    public func weight(on backend: any Backend) throws -> NF4Weight {
        let s = stored
        func bytes(_ values: [UInt8]) throws -> Tensor {
            try values.withUnsafeBytes { try backend.upload(bytes: $0, dtype: .uint8, shape: [values.count]) }
        }
        let absmax: NF4Weight.Absmax = if let nested = nestedBlocksize {
            .doubleQuantized(codes: try bytes(s.absmaxCodes), map: try backend.upload(s.nestedMap, shape: [256]),
                             scales: try backend.upload(s.scales, shape: [s.scales.count]), offset: s.offset, blocksize: nested)
        } else {
            .float32(try backend.upload(s.absmax, shape: [blockCount]))
        }
        return try NF4Weight(rows: rows, columns: columns, blocksize: blocksize, codes: try bytes(s.codes),
                             map: try backend.upload(nf4CodeBook, shape: [16]), absmax: absmax, dtype: dtype)
    }

    /// Every element dequantized on the host, one at a time, as NF4.swift's header states it: `map[q]·absmax` in
    /// float32, absmax `nestedMap[c]·scale` rounded and then `+ offset` rounded; then rounded to the weight's dtype.
    public var reference: [Float] { reference(rounding: dtype) }

    /// `reference` with each element rounded to `rounding` (float32: not rounded) and widened back.
    public func reference(rounding: DType) -> [Float] {
        let s = stored
        return (0..<count).map { e in
            let byte = s.codes[e / 2]
            let q = e % 2 == 0 ? byte >> 4 : byte & 15
            let block = e / blocksize
            var absmax = s.absmax[block]
            if let nested = nestedBlocksize {
                let scaled: Float = s.nestedMap[Int(s.absmaxCodes[block])] * s.scales[block / nested]
                absmax = scaled + s.offset
            }
            let value = nf4CodeBook[Int(q)] * absmax
            switch rounding {
            case .bfloat16: return Convert.float(bfloat16: Convert.bfloat16(value))
            case .float16: return Convert.float(float16: Convert.float16(value))
            default: return value
            }
        }
    }
}

/// `C = alpha·A·op(W) + beta·C (+ bias)` with W an `NF4Case`: forward (`transposeW`, W `[n, k]`) or input gradient
/// (W `[k, n]`).
public struct QuantizedGEMMCase: Sendable, CustomStringConvertible {
    public var m: Int, n: Int, k: Int
    public var transposeW: Bool
    public var alpha: Float = 1, beta: Float = 0
    public var bias = false
    public var blocksize = 64
    public var nestedBlocksize: Int? = 256
    /// The weight's dtype, and the dtype the GEMM rounds its elements to (`QuantizedGEMM.elementDType`; nil: dtype).
    public var dtype: DType = .float32
    public var elementDType: DType?

    public init(m: Int, n: Int, k: Int, transposeW: Bool, alpha: Float = 1, beta: Float = 0, bias: Bool = false,
                blocksize: Int = 64, nestedBlocksize: Int? = 256, dtype: DType = .float32, elementDType: DType? = nil) {
        (self.m, self.n, self.k, self.transposeW, self.alpha, self.beta, self.bias) = (m, n, k, transposeW, alpha, beta, bias)
        (self.blocksize, self.nestedBlocksize, self.dtype, self.elementDType) = (blocksize, nestedBlocksize, dtype, elementDType)
    }

    public var description: String {
        "\(m)x\(n)x\(k) \(transposeW ? "x·Wᵀ" : "dy·W") alpha \(alpha) beta \(beta)\(bias ? " bias" : "") "
            + "blocksize \(blocksize) " + (nestedBlocksize.map { "nested \($0)" } ?? "float32 absmax")
            + (dtype == .float32 ? "" : " \(dtype) weight") + (elementDType.map { " \($0) elements" } ?? "")
    }

    public var weight: NF4Case {
        NF4Case(rows: transposeW ? n : k, columns: transposeW ? k : n, blocksize: blocksize,
                nestedBlocksize: nestedBlocksize, seed: UInt64(m * 31 + n * 7 + k), dtype: dtype)
    }

    /// The dequantized weight the GEMM must multiply by: each element rounded to its element dtype.
    public var dequantizedWeight: [Float] { weight.reference(rounding: elementDType ?? dtype) }

    public var a: [Float] { randomValues(m * k, seed: 3) }
    public var c0: [Float] { randomValues(m * n, seed: 4) }
    public var biasValues: [Float] { randomValues(n, seed: 5).map { $0 * 3 } }

    /// C after the quantized GEMM on `backend` (on OpenCL, optionally with a given kernel).
    public func run(on backend: any Backend, kernel: NF4GEMMKernel? = nil) throws -> [Float] {
        let c = try backend.upload(c0, shape: [m, n])
        let op = try QuantizedGEMM(
            a: try backend.upload(a, shape: [m, k]), weight: try weight.weight(on: backend), c: c, transposeW: transposeW,
            alpha: alpha, beta: beta, bias: bias ? try backend.upload(biasValues, shape: [n]) : nil, elementDType: elementDType)
        if let kernel, let cl = backend as? OpenCLBackend { try cl.quantizedGEMM(op, kernel: kernel) } else { try backend.quantizedGEMM(op) }
        return try backend.download(c)
    }

    /// C after the float GEMM on `backend` with the reference dequantized weight as a float32 tensor.
    public func runDense(on backend: any Backend) throws -> [Float] {
        let c = try backend.upload(c0, shape: [m, n])
        let w = try backend.upload(dequantizedWeight, shape: transposeW ? [n, k] : [k, n])
        try backend.gemm(GEMM(a: try backend.upload(a, shape: [m, k]), b: w, c: c, transposeB: transposeW,
                              alpha: alpha, beta: beta, bias: bias ? try backend.upload(biasValues, shape: [n]) : nil))
        return try backend.download(c)
    }

    /// The naive triple loop in Double over the reference dequantized weight.
    public var reference: [Double] {
        let (a, w, c0, bias) = (self.a, dequantizedWeight, self.c0, biasValues)
        var out = [Double](repeating: 0, count: m * n)
        for i in 0..<m {
            for j in 0..<n {
                var sum = 0.0
                for p in 0..<k { sum += Double(a[i * k + p]) * Double(transposeW ? w[j * k + p] : w[p * n + j]) }
                out[i * n + j] = Double(alpha) * sum + (beta == 0 ? 0 : Double(beta) * Double(c0[i * n + j]))
                    + (self.bias ? Double(bias[j]) : 0)
            }
        }
        return out
    }

    /// The tolerance for float32 sums of k terms of magnitude up to ~2 against the Double reference.
    public var tolerance: (atol: Double, rtol: Double) { (2e-6 * Double(k) + 1e-5, 1e-4) }

    /// Shapes across every tile edge of both devices (CPU 8×32 micro-tiles, kc = 768, n ≤ 16's narrow kernel; the
    /// OpenCL 64×64 work-group tiles and 16/32-term steps, 12×32 strip tiles and 256-term panels), blocks spanning
    /// rows, odd element counts, both absmax forms.
    public static let edges: [QuantizedGEMMCase] = {
        var cases: [QuantizedGEMMCase] = []
        for transposeW in [true, false] {
            cases.append(.init(m: 1, n: 1, k: 1, transposeW: transposeW))
            cases.append(.init(m: 7, n: 33, k: 65, transposeW: transposeW, alpha: 0.5, beta: 2))
            cases.append(.init(m: 33, n: 7, k: 130, transposeW: transposeW, nestedBlocksize: nil))
            cases.append(.init(m: 65, n: 130, k: 33, transposeW: transposeW, bias: true, blocksize: 32, nestedBlocksize: 3))
            cases.append(.init(m: 130, n: 65, k: 7, transposeW: transposeW, beta: -1, bias: true, blocksize: 128))
            cases.append(.init(m: 130, n: 33, k: 65, transposeW: transposeW, alpha: 1.5, nestedBlocksize: 2))
            cases.append(.init(m: 1, n: 130, k: 130, transposeW: transposeW, beta: 1, nestedBlocksize: nil))
            cases.append(.init(m: 65, n: 1, k: 33, transposeW: transposeW, bias: true))
            // Several blocks of k (kc = 768) and threads; the narrow kernel over them; a blocksize above k.
            cases.append(.init(m: 70, n: 100, k: 801, transposeW: transposeW, alpha: 0.5, beta: 0.5, bias: true, nestedBlocksize: 5))
            cases.append(.init(m: 40, n: 9, k: 800, transposeW: transposeW, beta: 1, blocksize: 256, nestedBlocksize: nil))
            cases.append(.init(m: 150, n: 40, k: 800, transposeW: transposeW, alpha: 2, beta: -0.5, bias: true))
            cases.append(.init(m: 200, n: 96, k: 64, transposeW: transposeW, blocksize: 4096))
        }
        return cases
    }()

    /// Weights quantized from bfloat16 and float16 (elements rounded to them), over the same edges: tile and panel
    /// edges, the narrow kernel, several blocks of k, both absmax forms; and a bfloat16 weight read unrounded (the
    /// forward of bitsandbytes 0.50).
    public static let dtypeEdges: [QuantizedGEMMCase] = {
        var cases: [QuantizedGEMMCase] = []
        for transposeW in [true, false] {
            for dtype in [DType.bfloat16, .float16] {
                cases.append(.init(m: 7, n: 33, k: 65, transposeW: transposeW, alpha: 0.5, beta: 2, dtype: dtype))
                cases.append(.init(m: 33, n: 7, k: 130, transposeW: transposeW, nestedBlocksize: nil, dtype: dtype))
                cases.append(.init(m: 65, n: 130, k: 33, transposeW: transposeW, bias: true, blocksize: 32, nestedBlocksize: 3, dtype: dtype))
                cases.append(.init(m: 70, n: 100, k: 801, transposeW: transposeW, alpha: 0.5, beta: 0.5, bias: true,
                                   nestedBlocksize: 5, dtype: dtype))
                cases.append(.init(m: 40, n: 9, k: 800, transposeW: transposeW, beta: 1, blocksize: 256, nestedBlocksize: nil, dtype: dtype))
            }
            cases.append(.init(m: 65, n: 130, k: 33, transposeW: transposeW, bias: true, blocksize: 32, nestedBlocksize: 3,
                               dtype: .bfloat16, elementDType: .float32))
            cases.append(.init(m: 40, n: 9, k: 800, transposeW: transposeW, dtype: .float16, elementDType: .float32))
        }
        return cases
    }()
}

/// bitsandbytes' `dequantize_4bit` of the nf4 fixture cases (Tests/Fixtures/nf4, make_qlora_fixtures.py) whose
/// cases.json entry has `dtypes`: the same packed weight with quant_state dtype bfloat16 and float16
/// (`<case>.dequantized_bfloat16`, `_float16`: the float32 products rounded, overflowing to inf in float16).
public enum NF4DTypeFixture {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/nf4").path

    /// (case, dtype) for every stored rounding.
    public static let cases: [(String, DType)] = {
        guard let index = try? JSONValue.readObject(path: folder + "/cases.json"),
              let list = index["cases"]?.arrayValue else { return [] }
        let names = list.compactMap { c -> String? in
            c.objectValue?["dtypes"]?.boolValue == true ? c.objectValue?["name"]?.stringValue : nil
        }
        return names.flatMap { name in [DType.bfloat16, .float16].map { (name, $0) } }
    }()

    static let file = Result { try SafeTensorsFile(path: folder + "/cases.safetensors") }

    /// The case's weight as the fixture stores it, with quant_state dtype `dtype`.
    public static func weight(_ name: String, dtype: DType) throws -> NF4HostWeight {
        let w = try file.get().readNF4(module: name)
        return try NF4HostWeight(rows: w.rows, columns: w.columns, blocksize: w.blocksize, codes: w.codes, map: w.map,
                                 absmax: w.absmax, dtype: dtype)
    }

    /// bitsandbytes' dequantization to `dtype`, widened to float32 (exact).
    public static func expected(_ name: String, dtype: DType) throws -> [Float] {
        try file.get().floats("\(name).dequantized_\(dtype.rawValue)")
    }
}
