// Kernel parameters and `lora tune`'s cache: non-default legal values change the compiled kernels and stay exact
// against the CPU; the search keeps a family's chosen time at or below its default's from the same run and writes a
// cache that later backends use; broken, stale and unknown-parameter cache files are ignored with a warning. Every
// backend here is its own (the shared test backend's parameters are never changed), and every cache is in a temp folder.
import Foundation
import LoRATestSupport
@testable import LoRAOpenCL
import SwiftLoRA
import Testing

@Suite("OpenCL kernel tuning", .enabled(if: TestDevices.runOpenCL, "\(TestDevices.skipReason)"))
struct OpenCLTuningTests {
    let cpu = CPUBackend.shared
    var device: OpenCLDeviceInfo { get throws { try TestDevices.openCL.get().device } }

    /// A backend of its own on the test device, with `tuning`.
    func backend(_ tuning: KernelTuning) throws -> OpenCLBackend {
        try OpenCLBackend(index: try device.index, tuning: tuning)
    }

    /// The device's defaults with `changes`.
    func parameters(_ changes: [String: Int]) throws -> KernelParameters {
        KernelParameters.defaults(for: try device.kind).with(changes)
    }

    func temporaryFolder() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("swift-lora-tune-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    // MARK: - Parameters

    static let gemmSets: [[String: Int]] = [
        ["gemm.TM": 4, "gemm.TN": 16, "gemm.VW": 4, "gemm.WG": 0],
        ["gemm.TM": 8, "gemm.TN": 64, "gemm.VW": 16, "gemm.WG": 16],
        ["gemm.TM": 1, "gemm.TN": 8, "gemm.VW": 8, "gemm.WG": 1],
        ["gemm.TM": 7, "gemm.TN": 32, "gemm.VW": 8, "gemm.WG": 64],
        ["gemm.TM": 16, "gemm.TN": 32, "gemm.VW": 16, "gemm.WG": 0],
    ]

    @Test("OpenCL GEMM with non-default legal parameters (-D TM/TN/VW, work-groups) matches the CPU", arguments: gemmSets.indices)
    func gemmParameters(_ index: Int) throws {
        let values = try parameters(Self.gemmSets[index])
        #expect(values.violation(on: try device) == nil)
        let cl = try backend(.parameters(values))
        for c in GEMMCase.awkward {
            #expect(firstMismatch(try c.run(on: cl, engine: .kernel), try c.run(on: cpu), atol: 1e-4, rtol: 1e-4) == nil, "\(c) \(values)")
        }
        // The values reached the compiler: a GEMM wider than 16 built with this set's tile.
        let (tm, tn, vw) = (values["gemm.TM"], values["gemm.TN"], values["gemm.VW"])
        let options = cl.kernels.keys.filter { $0.hasPrefix("matmul\u{0}") }
        #expect(options.contains { $0.contains("-D TM=\(tm) -D TN=\(tn)") && ($0.contains("-D VW=\(vw)") == (vw != 16)) }, "\(options)")
    }

    static let rowSets: [[String: Int]] = [
        ["softmax.GROUP": 1, "softmax.WG": 1, "layernorm.WG": 1, "rmsnorm.WG": 1, "cross_entropy.WG": 1],
        ["softmax.GROUP": 1, "softmax.WG": 4, "layernorm.WG": 4, "rmsnorm.WG": 4, "cross_entropy.WG": 4],
        ["softmax.GROUP": 1, "softmax.WG": 64, "layernorm.WG": 32, "rmsnorm.WG": 128, "cross_entropy.WG": 16],
        ["softmax.GROUP": 1, "softmax.WG": 1024, "layernorm.WG": 1024, "rmsnorm.WG": 512, "cross_entropy.WG": 1024],
        ["softmax.GROUP": 0, "softmax.WG": 8, "layernorm.WG": 2, "rmsnorm.WG": 8, "cross_entropy.WG": 2],
    ]

    @Test("OpenCL row kernels (softmax variants, norms, cross-entropy) with non-default work-groups match the CPU",
          arguments: rowSets.indices)
    func rowParameters(_ index: Int) throws {
        let values = try parameters(Self.rowSets[index])
        if let violation = values.violation(on: try device) {
            // Only a device too small for 1024-item groups may refuse a set; the rest must be legal everywhere.
            #expect(index == 3, "\(violation)")
            return
        }
        let cl = try backend(.parameters(values))
        for (rows, cols) in [(7, 1), (5, 33), (6, 300), (3, 1030)] {
            let seed = UInt64(rows * 1000 + cols)
            func run(_ b: any Backend) throws -> [[Float]] {
                let shape = [rows, cols]
                let x = try b.upload(randomValues(rows * cols, seed: seed).map { $0 * 4 + 3 }, shape: shape)
                let g = try b.upload(randomValues(cols, seed: seed + 1), shape: [cols])
                let beta = try b.upload(randomValues(cols, seed: seed + 2), shape: [cols])
                let dy = try b.upload(randomValues(rows * cols, seed: seed + 3), shape: shape)
                let (y, dx) = (try b.empty(shape), try b.empty(shape))
                var outputs: [[Float]] = []
                try b.softmax(Softmax(x: x, y: y, scale: 0.7))
                try b.softmaxBackward(SoftmaxBackward(y: y, dy: dy, dx: dx, scale: 0.7))
                outputs += [try y.toArray(), try dx.toArray()]
                // Causal over [Tq = rows, Tk = cols]: row r sees keys j <= r + cols - rows (none at all where that is < 0).
                try b.softmax(Softmax(x: x, y: y, causal: true))
                outputs.append(try y.toArray())
                let (mean, rstd) = (try b.empty([rows]), try b.empty([rows]))
                try b.layerNorm(LayerNorm(x: x, gamma: g, beta: beta, y: y, mean: mean, rstd: rstd))
                try b.layerNormBackward(LayerNormBackward(x: x, gamma: g, mean: mean, rstd: rstd, dy: dy, dx: dx))
                outputs += [try y.toArray(), try dx.toArray()]
                try b.rmsNorm(RMSNorm(x: x, gamma: g, y: y, rstd: rstd, epsilon: 1e-5))
                try b.rmsNormBackward(RMSNormBackward(x: x, gamma: g, rstd: rstd, dy: dy, dx: dx))
                outputs += [try y.toArray(), try dx.toArray()]
                let targets = try b.upload((0..<rows).map { Int32($0 * 7 % cols) }, shape: [rows])
                let losses = try b.empty([rows])
                try b.crossEntropy(CrossEntropy(logits: x, targets: targets, losses: losses, dlogits: dx, gradientScale: 0.5))
                outputs += [try losses.toArray(), try dx.toArray()]
                return outputs
            }
            let (got, expected) = (try run(cl), try run(cpu))
            for (i, (g, e)) in zip(got, expected).enumerated() {
                #expect(firstMismatch(g, e, atol: 2e-5, rtol: 1e-4) == nil, "output \(i) [\(rows), \(cols)] \(values)")
            }
        }
        // Each family's program was built for its cap (-D GROUP_MAX) where it is not the kernels' default 256.
        for (family, file) in [("layernorm", "normalization"), ("cross_entropy", "cross_entropy")] where values[family + ".WG"] != 256 {
            #expect(cl.kernels.keys.contains { $0.hasPrefix("\(file)\u{0}-D GROUP_MAX=\(values[family + ".WG"])\u{0}") }, "\(family)")
        }
    }

    @Test("OpenCL kernel parameters: the defaults are legal; rules between values and device limits are enforced")
    func parameterRules() throws {
        let device = try self.device
        for kind in [OpenCLDeviceKind.cpu, .gpu] where kind == device.kind {
            #expect(KernelParameters.defaults(for: kind).violation(on: device) == nil)
        }
        #expect(try parameters(["gemm.TN": 8, "gemm.VW": 16]).violation(on: device)?.contains("multiple of gemm.VW") == true)
        #expect(try parameters(["gemm.TM": 16, "gemm.TN": 64]).violation(on: device)?.contains("exceed 512") == true)
        #expect(try parameters(["gemm.TN": 48]).violation(on: device)?.contains("gemm.TN = 48") == true)
        #expect(try parameters(["layernorm.WG": 3]).violation(on: device)?.contains("layernorm.WG = 3") == true)
        #expect(throws: LoRAError.self) { try backend(.parameters(try parameters(["softmax.GROUP": 2]))) }
        // Untuned, the programs are built with the device kind's defaults: matmul.cl's own vector width (no -D VW);
        // a norm's row on 16 work-items on CPU devices (-D GROUP_MAX=16), common.cl's cap of 256 elsewhere (no option).
        let plain = try backend(.defaults)
        try plain.layerNorm(LayerNorm(x: plain.upload([1, 2, 3], shape: [1, 3]), gamma: plain.upload([1, 1, 1], shape: [3]),
                                      beta: plain.upload([0, 0, 0], shape: [3]), y: plain.empty([1, 3])))
        _ = try GEMMCase(m: 5, n: 40, k: 3).run(on: plain, engine: .kernel)
        let normOptions = device.kind == .cpu ? "-D GROUP_MAX=16" : ""
        #expect(plain.kernels.keys.contains("normalization\u{0}\(normOptions)\u{0}layernorm_forward"), "\(plain.kernels.keys)")
        #expect(!plain.kernels.keys.contains { $0.contains("VW=") })
        #expect(plain.kernelParametersOrigin == "defaults")
    }

    // MARK: - The search and the cache

    @Test("OpenCL lora tune's search: chosen time <= the default's in the same run, a cache later backends use")
    func tuneWritesCache() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let cl = try backend(.defaults)
        let shapes = TuningShapes(gemm: [(40, 72, 24)], softmax: (64, 32), norm: (16, 100), crossEntropy: (8, 300),
                                  lora: (8, 32, 24, 4))
        let tuner = KernelTuner(backend: cl, budget: 4, shapes: shapes, families: ["gemm", "softmax", "layernorm", "cross_entropy"])
        let report = try tuner.run()
        #expect(report.results.map(\.family) == ["gemm", "softmax", "layernorm", "cross_entropy"])
        for result in report.results {
            #expect(result.failure == nil, "\(result.family): \(result.failure ?? "")")
            #expect(result.tunedSeconds <= result.defaultSeconds, "\(result.family)")
            #expect(result.measured >= 1 && result.defaultSeconds > 0, "\(result.family)")
            for parameter in KernelParameter.all where parameter.family == result.family {
                #expect(report.parameters[parameter.name] == result.tuned[parameter.name])
            }
        }
        // Families not tuned keep their defaults; the backend now runs the chosen values.
        let defaults = KernelParameters.defaults(for: cl.device.kind)
        #expect(report.parameters["rmsnorm.WG"] == defaults["rmsnorm.WG"])
        #expect(cl.kernelParameters == report.parameters)
        #expect(report.parameters.violation(on: cl.device) == nil)

        let url = try TuningCache.write(report.entry(for: cl), for: cl.device, directory: folder.path)
        #expect(url.deletingLastPathComponent().path == folder.path && url.pathExtension == "json")
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path) == [url.lastPathComponent])  // no temp file left
        let later = try backend(.cache(directory: folder.path))
        #expect(later.kernelParameters == report.parameters)
        #expect(later.kernelParametersOrigin == "tuned: \(url.path)")
        #expect(later.tuningCacheWarning == nil)
        // And it computes with them.
        let c = GEMMCase(m: 33, n: 70, k: 19)
        #expect(firstMismatch(try c.run(on: later, engine: .kernel), try c.run(on: cpu), atol: 1e-4) == nil)
    }

    /// Writes `text` as the device's cache file in a new folder and opens a backend reading it.
    func backendReading(_ text: String) throws -> (OpenCLBackend, URL) {
        let folder = try temporaryFolder()
        let url = TuningCache.file(for: try device, directory: folder.path)
        try Data(text.utf8).write(to: url)
        return (try backend(.cache(directory: folder.path)), url)
    }

    /// A valid cache file's JSON for the test device, with `parameters`, `kernels` and `driver` as given.
    func cacheText(parameters: [String: Any], kernels: String? = nil, driver: String? = nil) throws -> String {
        let device = try self.device
        let object: [String: Any] = [
            "format": 1, "device": device.name, "vendor": device.vendor, "driver": driver ?? device.driverVersion,
            "kernels": try kernels ?? OpenCLBackend.kernelSourceHash(directory: nil), "parameters": parameters, "results": [],
        ]
        return String(decoding: try JSONSerialization.data(withJSONObject: object), as: UTF8.self)
    }

    @Test("OpenCL tuning cache: a valid file is used; broken, unknown-parameter, illegal and stale files are ignored with a warning",
          .disabled(if: ProcessInfo.processInfo.environment["LORA_KERNELS_DIR"] != nil, "the hash below is of the embedded kernels"))
    func cacheValidation() throws {
        let defaults = KernelParameters.defaults(for: try device.kind)
        let (good, goodURL) = try backendReading(try cacheText(parameters: ["layernorm.WG": 8, "gemm.TM": 6]))
        #expect(good.kernelParameters == defaults.with(["layernorm.WG": 8, "gemm.TM": 6]) && good.tuningCacheWarning == nil)
        #expect(good.kernelParametersOrigin == "tuned: \(goodURL.path)")

        let cases: [(String, String)] = [
            ("{ not json", "does not parse"),
            (#"{"format": 1, "device": 3}"#, "does not parse"),
            (try cacheText(parameters: ["gemm.TQ": 4]), "unknown parameter gemm.TQ"),
            (try cacheText(parameters: ["gemm.TN": 48]), "illegal value: gemm.TN = 48"),
            (try cacheText(parameters: ["gemm.TN": 8, "gemm.VW": 16]), "illegal value: gemm.TN = 8 is not a multiple"),
            (try cacheText(parameters: ["gemm.TM": "six"]), "parameters.gemm.TM is not an integer"),
            (try cacheText(parameters: ["gemm.TM": 6], kernels: "0123456789abcdef"), "stale: the kernels changed"),
            (try cacheText(parameters: ["gemm.TM": 6], driver: "0.0-other"), "stale: tuned on"),
        ]
        for (text, reason) in cases {
            let (cl, url) = try backendReading(text)
            #expect(cl.kernelParameters == defaults, "\(reason)")
            #expect(cl.kernelParametersOrigin == "defaults")
            let warning = try #require(cl.tuningCacheWarning, "\(reason)")
            #expect(warning.contains(url.path) && warning.contains(reason) && !warning.contains("\n"), "\(warning)")
        }
        // No file: the defaults, silently.
        let empty = try backend(.cache(directory: try temporaryFolder().path))
        #expect(empty.kernelParameters == defaults && empty.tuningCacheWarning == nil && empty.kernelParametersOrigin == "defaults")
    }

    @Test("OpenCL tuning cache: the folder is XDG_CACHE_HOME/swift-lora, else ~/.cache/swift-lora; the name hashes device and driver")
    func cacheLocation() throws {
        let device = try self.device
        let url = TuningCache.file(for: device, directory: "/tmp/x")
        #expect(url.path.hasPrefix("/tmp/x/") && url.lastPathComponent.count == 16 + 5)
        #expect(TuningCache.file(for: device) == TuningCache.folder().appendingPathComponent(url.lastPathComponent))
        let folder = TuningCache.folder().path
        if let xdg = ProcessInfo.processInfo.environment["XDG_CACHE_HOME"], xdg.hasPrefix("/") {
            #expect(folder == URL(fileURLWithPath: xdg).appendingPathComponent("swift-lora").path)
        } else {
            #expect(folder.hasSuffix("/.cache/swift-lora"))
        }
        #expect(TuningCache.fnv1a("a") != TuningCache.fnv1a("b") && TuningCache.fnv1a("") == "cbf29ce484222325")
    }
}
