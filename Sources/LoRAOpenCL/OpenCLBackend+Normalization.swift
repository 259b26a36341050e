// OpenCL layer normalization and RMS normalization and their gradients: Kernels/normalization.cl. Forward and dx run
// one work-group per row with local-memory reductions; its largest size is the tunable layernorm.WG / rmsnorm.WG
// (KernelParameters.swift; 1 makes it one work-item per row).
import LoRARuntime

extension OpenCLBackend {
    public func layerNorm(_ op: LayerNorm) throws {
        try requireOwned(op)
        let k = try kernel("layernorm_forward", file: "normalization", options: kernelParameters.rowOptions("layernorm"))
        let group = try rowGroupSize(k, cols: op.cols, cap: kernelParameters["layernorm.WG"])
        // Unused statistics slots still need valid buffers; nothing is written through them (write_stats = 0).
        try launch(k, global: [op.rows * group], local: [group], [
            .tensor(op.x), .tensor(op.gamma), .tensor(op.beta), .tensor(op.y),
            .tensor(op.mean ?? op.y), .tensor(op.rstd ?? op.y), .int(op.mean == nil ? 0 : 1), .int(op.cols), .float(op.epsilon),
        ])
    }

    public func layerNormBackward(_ op: LayerNormBackward) throws {
        try requireOwned(op)
        // The parameter sums read dy first: dx may overwrite it.
        if op.dgamma != nil || op.dbeta != nil {
            let k = try kernel("layernorm_backward_parameters", file: "normalization")
            try launch(k, global: [op.cols], [
                .tensor(op.x), .tensor(op.mean), .tensor(op.rstd), .tensor(op.dy),
                .tensor(op.dgamma ?? op.mean), .tensor(op.dbeta ?? op.mean),
                .int(op.dgamma == nil ? 0 : 1), .int(op.dbeta == nil ? 0 : 1), .int(op.rows), .int(op.cols),
            ])
        }
        let k = try kernel("layernorm_backward_dx", file: "normalization", options: kernelParameters.rowOptions("layernorm"))
        let group = try rowGroupSize(k, cols: op.cols, cap: kernelParameters["layernorm.WG"])
        try launch(k, global: [op.rows * group], local: [group], [
            .tensor(op.x), .tensor(op.gamma), .tensor(op.mean), .tensor(op.rstd), .tensor(op.dy), .tensor(op.dx),
            .int(op.accumulate ? 1 : 0), .int(op.cols),
        ])
    }

    public func rmsNorm(_ op: RMSNorm) throws {
        try requireOwned(op)
        let k = try kernel("rmsnorm_forward", file: "normalization", options: kernelParameters.rowOptions("rmsnorm"))
        let group = try rowGroupSize(k, cols: op.cols, cap: kernelParameters["rmsnorm.WG"])
        // Without rstd its slot still needs a valid buffer; nothing is written through it (write_rstd = 0).
        try launch(k, global: [op.rows * group], local: [group], [
            .tensor(op.x), .tensor(op.gamma), .tensor(op.y), .tensor(op.rstd ?? op.y), .int(op.rstd == nil ? 0 : 1),
            .int(op.cols), .float(op.epsilon),
        ])
    }

    public func rmsNormBackward(_ op: RMSNormBackward) throws {
        try requireOwned(op)
        // The gamma sums read dy first: dx may overwrite it.
        if let dgamma = op.dgamma {
            let k = try kernel("rmsnorm_backward_gamma", file: "normalization")
            try launch(k, global: [op.cols], [
                .tensor(op.x), .tensor(op.rstd), .tensor(op.dy), .tensor(dgamma), .int(op.rows), .int(op.cols),
            ])
        }
        let k = try kernel("rmsnorm_backward_dx", file: "normalization", options: kernelParameters.rowOptions("rmsnorm"))
        let group = try rowGroupSize(k, cols: op.cols, cap: kernelParameters["rmsnorm.WG"])
        try launch(k, global: [op.rows * group], local: [group], [
            .tensor(op.x), .tensor(op.gamma), .tensor(op.rstd), .tensor(op.dy), .tensor(op.dx),
            .int(op.accumulate ? 1 : 0), .int(op.cols),
        ])
    }
}
