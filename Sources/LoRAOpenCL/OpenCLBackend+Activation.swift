// OpenCL gelu_new and its gradient: Kernels/activation.cl, one work-item per element.
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
}
