// OpenCL gelu_new and SwiGLU and their gradients: Kernels/activation.cl, one work-item per element.
import LoRARuntime

extension OpenCLBackend {
    public func gelu(_ op: GELU) throws {
        try requireOwned(op)
        let k = try kernel("gelu_forward", file: "activation")
        try launch(k, global: [op.x.count], [.tensor(op.x), .tensor(op.y), .int(op.x.count)])
    }

    public func geluBackward(_ op: GELUBackward) throws {
        try requireOwned(op)
        let k = try kernel("gelu_backward", file: "activation")
        try launch(k, global: [op.x.count], [.tensor(op.x), .tensor(op.dy), .tensor(op.dx), .int(op.x.count)])
    }

    public func swiglu(_ op: SwiGLU) throws {
        try requireOwned(op)
        let k = try kernel("swiglu_forward", file: "activation")
        try launch(k, global: [op.gate.count], [.tensor(op.gate), .tensor(op.up), .tensor(op.y), .int(op.gate.count)])
    }

    public func swigluBackward(_ op: SwiGLUBackward) throws {
        try requireOwned(op)
        let k = try kernel("swiglu_backward", file: "activation")
        try launch(k, global: [op.gate.count], [
            .tensor(op.gate), .tensor(op.up), .tensor(op.dy), .tensor(op.dGate), .tensor(op.dUp), .int(op.gate.count),
        ])
    }
}
