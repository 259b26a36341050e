// OpenCL AdamW: Kernels/optimizer.cl, one fused pass over p, g, m and v, with the scalars `AdamW` prepared.
import LoRARuntime

extension OpenCLBackend {
    public func adamW(_ op: AdamW) throws {
        try requireOwned(op)
        let k = try kernel("adamw", file: "optimizer")
        let count = op.parameters.count
        try launch(k, global: [count], [
            .tensor(op.parameters), .tensor(op.gradients), .tensor(op.firstMoment), .tensor(op.secondMoment),
            .float(op.gradientScale), .float(op.decay), .float(op.firstWeight), .float(op.beta2), .float(op.secondWeight),
            .float(op.secondCorrectionRoot), .float(op.epsilon), .float(op.stepSize), .int(count),
        ])
    }
}
