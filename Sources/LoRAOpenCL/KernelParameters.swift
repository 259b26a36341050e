// The kernels' tunable parameters: what each one is, its legal values on a device, the rules between them, and the
// defaults per device kind (hand-picked, or measured on PoCL for CPU devices; matmul.cl's own #ifndef defaults are
// the CPU ones). A backend compiles with one `KernelParameters` for its life: the defaults, or what `lora tune`
// measured and cached (TuningCache.swift). Names are "family.NAME" with NAME the kernel's -D macro where there is one:
//   gemm.TM, gemm.TN, gemm.VW  (-D TM/TN/VW, matmul.cl)   gemm.WG  work-items per group along rows (0: the driver's)
//   softmax.GROUP  0: one work-item per row, 1: one work-group per row (softmax.cl's _group kernels)
//   softmax.WG, layernorm.WG, rmsnorm.WG, cross_entropy.WG  the row kernels' largest work-group (-D GROUP_MAX)
//   lora.WG  the fused LoRA kernel's work-group (-D LORA_WG, lora.cl)
import Foundation

/// One tunable of the OpenCL kernels.
public struct KernelParameter: Sendable {
    /// "family.NAME", e.g. "gemm.TM".
    public let name: String
    /// The kernel family it belongs to (the unit `lora tune` measures): gemm, softmax, layernorm, rmsnorm,
    /// cross_entropy, lora.
    public var family: String { String(name.prefix { $0 != "." }) }
    /// What it means, with its range.
    public let summary: String
    let legal: @Sendable (OpenCLDeviceInfo) -> [Int]
    let search: (@Sendable (OpenCLDeviceInfo) -> [Int])?
    let defaultValue: @Sendable (OpenCLDeviceKind) -> Int

    /// Every legal value on `device`, ascending (each alone; `KernelParameters.violation` checks the rules between them).
    public func legalValues(on device: OpenCLDeviceInfo) -> [Int] { legal(device) }

    /// The values `lora tune` tries on `device`: the legal ones, or a coarser grid where they are many.
    public func searchValues(on device: OpenCLDeviceInfo) -> [Int] { search?(device) ?? legal(device) }

    /// The value a backend uses without a tuning cache.
    public func defaultValue(for kind: OpenCLDeviceKind) -> Int { defaultValue(kind) }

    /// Powers of two from 1 to `limit`.
    static func powersOfTwo(upTo limit: Int) -> [Int] {
        var values: [Int] = [], v = 1
        while v <= limit { values.append(v); v *= 2 }
        return values
    }

    /// A row kernel's work-group cap: a power of two the device allows, whose scratch (4·WG bytes) fits local memory.
    /// `cpuDefault`: the cap on CPU devices, 256 elsewhere.
    static func rowWorkGroup(_ family: String, _ meaning: String, cpuDefault: Int = 256) -> KernelParameter {
        KernelParameter(
            name: family + ".WG",
            summary: "\(meaning): largest work-group per row, a power of two 1-1024 within the device's limits (-D GROUP_MAX)",
            legal: { d in powersOfTwo(upTo: min(1024, d.maxWorkGroupSize, max(1, d.localMemoryBytes / 8))) },
            search: nil, defaultValue: { $0 == .cpu ? cpuDefault : 256 })
    }

    /// Every parameter, in the order `lora tune` searches them.
    public static let all: [KernelParameter] = [
        KernelParameter(name: "gemm.TM", summary: "rows of C per work-item, 1-16",
                        legal: { _ in Array(1...16) }, search: { _ in [2, 4, 6, 8, 12, 16] },
                        defaultValue: { $0 == .cpu ? 12 : 4 }),
        KernelParameter(name: "gemm.TN", summary: "columns of C per work-item: 8, 16, 32 or 64, a multiple of VW; TM·TN <= 512",
                        legal: { _ in [8, 16, 32, 64] }, search: nil, defaultValue: { $0 == .cpu ? 32 : 16 }),
        KernelParameter(name: "gemm.VW", summary: "floats per accumulator vector: 4, 8 or 16",
                        legal: { _ in [4, 8, 16] }, search: nil, defaultValue: { _ in 16 }),
        KernelParameter(name: "gemm.WG", summary: "work-items per work-group along C's rows: 0 (the driver's choice) or a power of two up to 256",
                        legal: { d in [0] + powersOfTwo(upTo: min(256, d.maxWorkGroupSize)) },
                        search: { d in [0] + powersOfTwo(upTo: min(256, d.maxWorkGroupSize)).filter { $0 == 1 || $0 >= 16 } },
                        defaultValue: { $0 == .cpu ? 1 : 0 }),
        KernelParameter(name: "softmax.GROUP", summary: "0: one work-item per row; 1: one work-group per row with local-memory reductions",
                        legal: { _ in [0, 1] }, search: nil, defaultValue: { $0 == .gpu ? 1 : 0 }),
        // On CPU devices a row's reduction takes 16 work-items: PoCL runs a work-group's items as loops between
        // barriers, so every level of a reduction tree is another pass (`lora tune` on PoCL 3.1: 16 items are 2.5-3×
        // faster than 256 for the norms; BENCHMARKS.md). One item is faster still, but one running sum over a row
        // loses accuracy (GPT-2's LoRA gradients drifted past the PEFT fixture's tolerance); 16 partial sums and a
        // tree are the CPU backend's own order (16 lanes, then a horizontal sum). Softmax's cap serves GROUP 1 (GPUs).
        rowWorkGroup("softmax", "softmax (GROUP 1)"),
        rowWorkGroup("layernorm", "layer norm forward and dx", cpuDefault: 16),
        rowWorkGroup("rmsnorm", "RMS norm forward and dx", cpuDefault: 16),
        rowWorkGroup("cross_entropy", "cross-entropy", cpuDefault: 16),
        KernelParameter(name: "lora.WG", summary: "the fused LoRA kernel's work-group, a power of two 1-1024 (-D LORA_WG)",
                        legal: { d in powersOfTwo(upTo: min(1024, d.maxWorkGroupSize)) }, search: nil,
                        defaultValue: { _ in 64 }),
    ]

    /// The parameter called `name`, if any.
    public static func named(_ name: String) -> KernelParameter? { all.first { $0.name == name } }

    /// The kernel families, in search order.
    public static var families: [String] {
        all.map(\.family).reduce(into: []) { if !$0.contains($1) { $0.append($1) } }
    }
}

/// One value for every tunable (`KernelParameter.all`).
public struct KernelParameters: Sendable, Hashable, CustomStringConvertible {
    /// Values by parameter name; every known name is present.
    public private(set) var values: [String: Int]

    /// The defaults for a kind of device: what every backend ran before tuning existed.
    public static func defaults(for kind: OpenCLDeviceKind) -> KernelParameters {
        KernelParameters(values: Dictionary(uniqueKeysWithValues: KernelParameter.all.map { ($0.name, $0.defaultValue(for: kind)) }))
    }

    /// The value of a known parameter (a programmer error otherwise).
    public subscript(name: String) -> Int {
        get {
            guard let value = values[name] else { preconditionFailure("unknown kernel parameter \(name)") }
            return value
        }
        set {
            precondition(KernelParameter.named(name) != nil, "unknown kernel parameter \(name)")
            values[name] = newValue
        }
    }

    /// These parameters with some replaced.
    public func with(_ changes: [String: Int]) -> KernelParameters {
        var copy = self
        for (name, value) in changes { copy[name] = value }
        return copy
    }

    /// Why these values cannot run on `device` (a value outside its legal set, or a rule between values broken),
    /// or nil when they can.
    public func violation(on device: OpenCLDeviceInfo) -> String? {
        for parameter in KernelParameter.all {
            let value = self[parameter.name]
            if !parameter.legalValues(on: device).contains(value) {
                return "\(parameter.name) = \(value) is not legal on \(device.name) (\(parameter.summary))"
            }
        }
        let (tm, tn, vw) = (self["gemm.TM"], self["gemm.TN"], self["gemm.VW"])
        if tn % vw != 0 { return "gemm.TN = \(tn) is not a multiple of gemm.VW = \(vw)" }
        if tm * tn > 512 { return "gemm.TM·gemm.TN = \(tm)·\(tn) = \(tm * tn) accumulators exceed 512" }
        return nil
    }

    /// The values of one family, as "NAME=value" in `KernelParameter.all`'s order.
    public func summary(of family: String) -> String {
        KernelParameter.all.filter { $0.family == family }
            .map { "\($0.name.dropFirst(family.count + 1))=\(self[$0.name])" }.joined(separator: " ")
    }

    /// Every family's values: "gemm TM=12 TN=32 VW=16 WG=1; softmax GROUP=0 WG=256; ...".
    public var description: String {
        KernelParameter.families.map { "\($0) \(summary(of: $0))" }.joined(separator: "; ")
    }
}

// MARK: - What the kernels are built and launched with

extension KernelParameters {
    /// The GEMM kernel's tile for a GEMM of `n` columns: a GEMM no wider than 16 takes 16-wide tiles (or TN when
    /// narrower), so a LoRA rank's strip is not half padding.
    func gemmTile(n: Int) -> (rows: Int, cols: Int, vector: Int, group: Int) {
        let tn = self["gemm.TN"]
        return (self["gemm.TM"], n <= 16 ? min(tn, 16) : tn, self["gemm.VW"], self["gemm.WG"])
    }

    /// The -D options of a row kernel family's program: none at common.cl's own cap (256).
    func rowOptions(_ family: String) -> String {
        let cap = self[family + ".WG"]
        return cap == 256 ? "" : "-D GROUP_MAX=\(cap)"
    }
}
