// `lora tune`'s search: for each kernel family (KernelParameter.families), coordinate descent from the defaults over
// each parameter's search values, at a few representative shapes (TuningShapes). Every candidate runs once and its
// outputs are compared with the CPU backend's before it is timed (median of several runs, each waited for); a
// candidate that fails to build, fails to launch or disagrees is rejected. A candidate replaces the best so far only
// when at least 3% faster, so noise does not pick values, and the default is always measured first. The winner then
// runs against the default in alternation (load on a shared machine drifts over a search) and stays only if still 3%
// faster: the reported times are that pair, so a family's chosen time is never above its default's in the same run.
// The budget is shared out over the families (GEMM gets three shares); a family's default is measured even past it.
import Foundation
import LoRARuntime

/// The shapes `lora tune` measures at.
public struct TuningShapes: Sendable {
    /// GEMMs C[m, n] = A[m, k]·B[k, n].
    public var gemm: [(m: Int, n: Int, k: Int)]
    /// Softmax over [rows, cols], causal (attention scores: rows = batch·heads·T, cols = T).
    public var softmax: (rows: Int, cols: Int)
    /// Layer norm and RMS norm over [rows, cols] (tokens × model width).
    public var norm: (rows: Int, cols: Int)
    /// Cross-entropy over [rows, classes] (tokens × vocabulary).
    public var crossEntropy: (rows: Int, classes: Int)
    /// The fused LoRA kernel: x [rows, inFeatures], rank r.
    public var lora: (rows: Int, inFeatures: Int, outFeatures: Int, rank: Int)

    public init(gemm: [(m: Int, n: Int, k: Int)], softmax: (rows: Int, cols: Int), norm: (rows: Int, cols: Int),
                crossEntropy: (rows: Int, classes: Int), lora: (rows: Int, inFeatures: Int, outFeatures: Int, rank: Int)) {
        (self.gemm, self.softmax, self.norm, self.crossEntropy, self.lora) = (gemm, softmax, norm, crossEntropy, lora)
    }

    /// GPT-2 small at batch 4 × 128 tokens: a square GEMM, the fused QKV projection, 12 heads' causal scores, the
    /// 768-wide norms, the LM head's cross-entropy over 128 rows of the 50257-token vocabulary, a rank-8 LoRA.
    public static let standard = TuningShapes(
        gemm: [(512, 512, 512), (512, 2304, 768)], softmax: (4 * 12 * 128, 128), norm: (512, 768),
        crossEntropy: (128, 50257), lora: (512, 768, 768, 8))
}

/// One family's outcome.
public struct TuningResult: Sendable {
    public let family: String
    public let defaults: KernelParameters
    public let tuned: KernelParameters
    /// Seconds for the family's workloads (the sum of each shape's median run), default and chosen values.
    public let defaultSeconds: Double, tunedSeconds: Double
    /// Candidates measured (the default included), and those rejected with why.
    public let measured: Int
    public let rejected: [String]
    /// Set when the defaults themselves failed (their outputs disagree with the CPU, or they cannot run): the
    /// family keeps its defaults and this says why.
    public let failure: String?
    public var speedup: Double { defaultSeconds / tunedSeconds }
}

/// A tuning run's outcome: the chosen values for every family and what was measured.
public struct TuningReport: Sendable {
    public let parameters: KernelParameters
    public let results: [TuningResult]

    /// The cache entry for `backend`'s device.
    public func entry(for backend: OpenCLBackend) throws -> TuningCache.Entry {
        TuningCache.Entry(device: backend.device.name, vendor: backend.device.vendor, driver: backend.device.driverVersion,
                          kernels: try backend.kernelSourceHash, parameters: parameters,
                          results: results.filter { $0.failure == nil }.map { ($0.family, $0.defaultSeconds, $0.tunedSeconds) })
    }
}

/// Measures kernel parameters on one OpenCL backend.
public struct KernelTuner {
    public let backend: OpenCLBackend
    public let budget: Double
    public let shapes: TuningShapes
    /// The families to tune (nil: every one the device uses).
    public let families: [String]?

    public init(backend: OpenCLBackend, budget: Double = 60, shapes: TuningShapes = .standard, families: [String]? = nil) {
        (self.backend, self.budget, self.shapes, self.families) = (backend, budget, shapes, families)
    }

    /// The families this device runs: the fused LoRA kernel only where it is the default path (GPUs).
    public var familiesToTune: [String] {
        let used = KernelParameter.families.filter { $0 != "lora" || backend.device.kind != .cpu }
        return families.map { wanted in used.filter(wanted.contains) } ?? used
    }

    /// Runs the search, leaves `backend` running with the chosen values, and returns them with the measurements.
    /// `progress` gets a line per candidate.
    public func run(progress: (String) -> Void = { _ in }) throws -> TuningReport {
        let start = DispatchTime.now().uptimeNanoseconds
        func elapsed() -> Double { Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 }
        let defaults = KernelParameters.defaults(for: backend.device.kind)
        var chosen = defaults
        var results: [TuningResult] = []
        let families = familiesToTune
        let weights = families.map { $0 == "gemm" ? 3.0 : 1.0 }
        for (index, family) in families.enumerated() {
            let share = weights[index] / weights[index...].reduce(0, +)
            let deadline = elapsed() + max(0, budget - elapsed()) * share
            let result = try tune(family, from: defaults, until: { elapsed() > deadline }, progress: progress)
            for parameter in KernelParameter.all where parameter.family == family {
                chosen[parameter.name] = result.tuned[parameter.name]
            }
            results.append(result)
        }
        backend.use(chosen)
        return TuningReport(parameters: chosen, results: results)
    }

    // MARK: - One family

    private func tune(_ family: String, from defaults: KernelParameters, until expired: () -> Bool,
                      progress: (String) -> Void) throws -> TuningResult {
        let workloads = try self.workloads(family).map { workload in
            let oracle = try workload.prepare(CPUBackend.shared)
            try oracle.run()
            return (workload, reference: try oracle.outputs(), device: try workload.prepare(backend))
        }
        var tried: [KernelParameters: Double] = [:]
        var rejected: [String] = []
        /// The candidate's seconds, or nil when rejected.
        func measure(_ candidate: KernelParameters) -> Double? {
            if let known = tried[candidate] { return known.isNaN ? nil : known }
            let label = candidate.summary(of: family)
            if let violation = candidate.violation(on: backend.device) {
                tried[candidate] = .nan
                rejected.append("\(label): \(violation)")
                return nil
            }
            backend.use(candidate)
            do {
                var total = 0.0
                for (workload, reference, device) in workloads {
                    try device.run()
                    if let mismatch = Self.mismatch(try device.outputs(), reference) {
                        throw TuningRejection(reason: "\(workload.name): \(mismatch)")
                    }
                    total += try Self.medianSeconds(device.run, backend: backend)
                }
                tried[candidate] = total
                progress(String(format: "%@ %@: %.3f ms", family, label, total * 1e3))
                return total
            } catch {
                tried[candidate] = .nan
                rejected.append("\(label): \(error)")
                progress("\(family) \(label): rejected (\(error))")
                return nil
            }
        }
        guard let defaultSeconds = measure(defaults) else {
            return TuningResult(family: family, defaults: defaults, tuned: defaults, defaultSeconds: .nan, tunedSeconds: .nan,
                                measured: 1, rejected: rejected, failure: rejected.last ?? "the defaults failed")
        }
        var (best, bestSeconds) = (defaults, defaultSeconds)
        search: for parameter in KernelParameter.all where parameter.family == family {
            let values = parameter.searchValues(on: backend.device)
            let current = values.firstIndex(of: best[parameter.name]) ?? 0
            // Nearest values first: a budget that runs out has tried the likeliest neighbours.
            for value in values.enumerated().sorted(by: { abs($0.offset - current) < abs($1.offset - current) }).map(\.element) {
                if expired() { break search }
                let candidate = best.with([parameter.name: value].merging(Self.requirements[parameter.name] ?? [:]) { a, _ in a })
                if let seconds = measure(candidate), seconds < bestSeconds * 0.97 { (best, bestSeconds) = (candidate, seconds) }
            }
        }
        guard best != defaults else {
            return TuningResult(family: family, defaults: defaults, tuned: defaults, defaultSeconds: defaultSeconds,
                                tunedSeconds: defaultSeconds, measured: tried.count, rejected: rejected, failure: nil)
        }
        // The search compared figures taken up to a budget apart, and a shared machine's load drifts: the winner
        // and the default run again in alternation, and the winner stays only if still 3% faster side by side.
        let (againstDefault, winner) = try headToHead(defaults, best, workloads.map(\.device))
        let (final, finalSeconds) = winner < againstDefault * 0.97 ? (best, winner) : (defaults, againstDefault)
        progress(String(format: "%@ side by side: default %.3f ms, %@ %.3f ms: %@", family, againstDefault * 1e3,
                        best.summary(of: family), winner * 1e3, final == best ? "tuned" : "kept the default"))
        return TuningResult(family: family, defaults: defaults, tuned: final, defaultSeconds: againstDefault, tunedSeconds: finalSeconds,
                            measured: tried.count, rejected: rejected, failure: nil)
    }

    /// Seconds of `a` and of `b` over the workloads (sums of medians), their runs alternating: at least 5 each, more
    /// up to 15 while under 0.3 s in all.
    private func headToHead(_ a: KernelParameters, _ b: KernelParameters, _ workloads: [Prepared]) throws -> (Double, Double) {
        var (totalA, totalB) = (0.0, 0.0)
        for workload in workloads {
            var (timesA, timesB): ([Double], [Double]) = ([], [])
            while timesA.count < 5 || (timesA.count < 15 && timesA.reduce(0, +) + timesB.reduce(0, +) < 0.3) {
                backend.use(a)
                timesA.append(try Self.seconds(workload.run, backend: backend))
                backend.use(b)
                timesB.append(try Self.seconds(workload.run, backend: backend))
            }
            totalA += timesA.sorted()[timesA.count / 2]
            totalB += timesB.sorted()[timesB.count / 2]
        }
        return (totalA, totalB)
    }

    /// Values a parameter means something only with: softmax.WG sizes the work-group variant's groups.
    static let requirements: [String: [String: Int]] = ["softmax.WG": ["softmax.GROUP": 1]]

    private struct TuningRejection: Error, CustomStringConvertible {
        let reason: String
        var description: String { reason }
    }

    /// Where `device` and `reference` differ by more than 1e-4 of the reference's largest magnitude (a wrong
    /// candidate is off by O(1); reordered float sums are not), or nil.
    static func mismatch(_ device: [[Float]], _ reference: [[Float]]) -> String? {
        for (index, (d, r)) in zip(device, reference).enumerated() {
            let scale = max(1, r.lazy.map { abs($0) }.max() ?? 0)
            for i in r.indices where !(abs(d[i] - r[i]) <= 1e-4 * scale) {
                return "output \(index) element \(i) is \(d[i]), the CPU backend's \(r[i])"
            }
        }
        return nil
    }

    /// The median seconds of `run` (each waited for): at least 3 runs, more up to 15 while under 0.1 s in all.
    static func medianSeconds(_ run: () throws -> Void, backend: OpenCLBackend) throws -> Double {
        var times: [Double] = []
        while times.count < 3 || (times.count < 15 && times.reduce(0, +) < 0.1) {
            times.append(try seconds(run, backend: backend))
        }
        return times.sorted()[times.count / 2]
    }

    /// The seconds of one `run`, waited for.
    static func seconds(_ run: () throws -> Void, backend: OpenCLBackend) throws -> Double {
        let start = DispatchTime.now().uptimeNanoseconds
        try run()
        try backend.synchronize()
        return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    }
}
