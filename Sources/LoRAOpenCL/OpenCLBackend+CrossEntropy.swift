// OpenCL cross-entropy fused with softmax: Kernels/cross_entropy.cl, one work-group per row of at most cross_entropy.WG
// items (KernelParameters.swift; 1 makes it one work-item per row).
import LoRARuntime

extension OpenCLBackend {
    public func crossEntropy(_ op: CrossEntropy) throws {
        try requireOwned(op)
        let k = try kernel("cross_entropy", file: "cross_entropy", options: kernelParameters.rowOptions("cross_entropy"))
        let group = try rowGroupSize(k, cols: op.classes, cap: kernelParameters["cross_entropy.WG"])
        // Without a gradient the slot still needs a valid buffer; nothing is written through it (write_grad = 0).
        try launch(k, global: [op.rows * group], local: [group], [
            .tensor(op.logits), .tensor(op.targets), .tensor(op.losses), .tensor(op.dlogits ?? op.losses),
            .int(op.dlogits == nil ? 0 : 1), .int(op.classes), .float(op.gradientScale),
        ])
    }
}
