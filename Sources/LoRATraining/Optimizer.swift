// Optimizers over a model's trainable tensors: AdamW (torch.optim.AdamW, one fused op per tensor), paged AdamW
// (the same update with the moments in host memory, streamed through two device staging pairs) and SGD, plus
// the global gradient norm that clipping needs (a sum of squares per tensor, added up on the device, one read).
import LoRANN
import LoRARuntime

/// AdamW, paged AdamW or SGD over a fixed list of parameters, with its state (moments, step count).
///
/// Paged AdamW (QLoRA's paged optimizer) keeps every moment in host-resident tensors and, per parameter tensor,
/// copies its m and v into a device staging pair, runs the same `AdamW` op there and copies them back. Two staging
/// pairs, each the size of the largest parameter, alternate, so the copy-in of tensor i+1 overlaps tensor i's
/// update and the device never holds more than two tensors' moments. The values are bit for bit AdamW's (same op,
/// same inputs; copies are exact). On a device that computes in host memory (the CPU) it is plain AdamW.
public final class Optimizer {
    public enum Kind: String, Sendable, CaseIterable {
        case adamw
        case pagedAdamW = "paged_adamw"
        case sgd

        /// Whether this kind keeps AdamW's moments (adamw and paged_adamw checkpoints hold the same tensors, so
        /// a run may resume with the other one).
        public var keepsMoments: Bool { self != .sgd }

        /// The kind named `name` (`adamw`, `paged_adamw`, `sgd`); anything else throws, listing the names.
        public static func named(_ name: String) throws -> Kind {
            guard let kind = Kind(rawValue: name) else {
                throw LoRAError.invalidArgument("unknown optimizer '\(name)': use "
                    + allCases.map(\.rawValue).joined(separator: ", "))
            }
            return kind
        }
    }

    public let kind: Kind
    public let parameters: [TrainableParameter]
    public var beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8, weightDecay: Float = 0.01
    /// Updates taken so far (AdamW's t after the last one).
    public private(set) var step = 0
    /// AdamW's first and second moments, one pair per parameter (empty for SGD). Host-resident when `isPaged`;
    /// either way the backend's ops and copies read and write them, as a checkpoint does.
    public let moments: [(m: Tensor, v: Tensor)]
    /// Paged AdamW's device staging, per parameter: views of the two staging pairs, alternating (empty unless paged).
    private let staging: [(m: Tensor, v: Tensor)]
    let backend: any Backend

    /// Whether the moments live in host memory and stream through device staging (paged AdamW on a device with
    /// memory of its own).
    public var isPaged: Bool { !staging.isEmpty }

    /// Bytes of device memory the optimizer's state takes (as tensors count them, before any allocator rounding):
    /// AdamW, both moments of every parameter; paged AdamW, its two staging pairs (4 × the largest parameter);
    /// paged AdamW on a device that computes in host memory (the CPU), every moment, since there host memory is
    /// device memory; SGD, nothing.
    public var stateDeviceBytes: Int {
        guard !isPaged else {
            let largest = parameters.map(\.value.count).max() ?? 0
            return 2 * 2 * largest * DType.float32.size
        }
        return moments.reduce(0) { $0 + $1.m.byteCount + $1.v.byteCount }
    }

    /// One line to show a person when the kind asked for is not what runs (paged AdamW on the CPU), else nil.
    public var notice: String? {
        guard kind == .pagedAdamW, !isPaged else { return nil }
        let device = backend.name == "cpu" ? "the CPU device" : backend.name
        return "paged_adamw on \(device) is plain AdamW: host memory is device memory"
    }

    public init(_ kind: Kind, parameters: [TrainableParameter]) throws {
        guard let first = parameters.first else { throw LoRAError.invalidArgument("optimizer: no trainable parameters") }
        let backend = first.value.backend
        (self.kind, self.parameters, self.backend) = (kind, parameters, backend)
        switch kind {
        case .sgd:
            (moments, staging) = ([], [])
        case .pagedAdamW where !backend.hostMemoryIsDeviceMemory:
            moments = try parameters.map { (try backend.hostResidentZeros($0.value.shape), try backend.hostResidentZeros($0.value.shape)) }
            let largest = parameters.map(\.value.count).max()!
            let pairs = try (0..<2).map { _ in (m: try backend.empty([largest]), v: try backend.empty([largest])) }
            // A view of a pair's first `count` elements, shaped as the parameter (storage may be larger than a view).
            staging = try parameters.enumerated().map { index, p in
                let pair = pairs[index % 2]
                return (try Tensor(shape: p.value.shape, storage: pair.m.storage, backend: backend),
                        try Tensor(shape: p.value.shape, storage: pair.v.storage, backend: backend))
            }
        case .adamw, .pagedAdamW:
            moments = try parameters.map { (try backend.zeros($0.value.shape), try backend.zeros($0.value.shape)) }
            staging = []
        }
    }

    /// √(Σ over every gradient of g²): the norm gradient clipping compares with its limit.
    public func gradientNorm() throws -> Float {
        let total = try backend.zeros([1])
        for p in parameters { try backend.reduce(Reduction(.sumOfSquares, of: p.gradient, into: total, accumulate: true)) }
        return try total.toArray()[0].squareRoot()
    }

    /// One update with learning rate `lr`; gradients are multiplied by `gradientScale` first (clipping).
    public func update(learningRate lr: Float, gradientScale: Float = 1) throws {
        step += 1
        if isPaged { return try pagedUpdate(learningRate: lr, gradientScale: gradientScale) }
        for (index, p) in parameters.enumerated() {
            switch kind {
            case .adamw, .pagedAdamW:
                try backend.adamW(adamW(p, m: moments[index].m, v: moments[index].v, learningRate: lr, gradientScale: gradientScale))
            case .sgd:
                // torch.optim.SGD with weight decay: g + wd·p, then p −= lr·(that).
                if weightDecay != 0 { try backend.axpy(Axpy(alpha: -lr * weightDecay, x: p.value, y: p.value)) }
                try backend.axpy(Axpy(alpha: -lr * gradientScale, x: p.gradient, y: p.value))
            }
        }
    }

    /// Paged AdamW's pass: tensor i's moments come in while tensor i−1 updates, go back while tensor i+1 updates.
    /// A staging pair is refilled (tensor i+2) only after the copy-back of tensor i, queued behind it.
    private func pagedUpdate(learningRate lr: Float, gradientScale: Float) throws {
        func fetch(_ i: Int) throws -> Transfer {
            try backend.beginTransfer([(moments[i].m, staging[i].m), (moments[i].v, staging[i].v)])
        }
        var incoming = try parameters.indices.prefix(2).map(fetch)
        var outgoing: [Transfer] = []
        for (index, p) in parameters.enumerated() {
            try backend.awaitTransfer(incoming[index])
            try backend.adamW(adamW(p, m: staging[index].m, v: staging[index].v, learningRate: lr, gradientScale: gradientScale))
            outgoing.append(try backend.beginTransfer([(staging[index].m, moments[index].m), (staging[index].v, moments[index].v)]))
            if index + 2 < parameters.count { incoming.append(try fetch(index + 2)) }
        }
        // Whatever comes next on the device (the next step's fetches, a checkpoint's reads) sees every moment home.
        for transfer in outgoing { try backend.awaitTransfer(transfer) }
    }

    private func adamW(_ p: TrainableParameter, m: Tensor, v: Tensor, learningRate lr: Float, gradientScale: Float) throws -> AdamW {
        try AdamW(parameters: p.value, gradients: p.gradient, firstMoment: m, secondMoment: v, learningRate: lr, beta1: beta1,
                  beta2: beta2, epsilon: epsilon, weightDecay: weightDecay, step: step, gradientScale: gradientScale)
    }

    /// Restores the step count (a checkpoint's); the moments are restored by writing their tensors.
    public func restore(step: Int) { self.step = step }
}
