// OpenCL dtype conversion: Kernels/convert.cl, one program per (source, destination) dtype pair; the same dtype
// is a buffer copy. Also the dtype codes every typed kernel takes as -D options (common.cl).
import LoRARuntime

extension DType {
    /// common.cl's code for a float dtype: 0 float32, 1 bfloat16, 2 float16 (ops validated the dtype already).
    var kernelCode: Int {
        switch self {
        case .bfloat16: 1
        case .float16: 2
        default: 0
        }
    }
}

extension OpenCLBackend {
    public func convert(_ op: Convert) throws {
        try requireOwned(op)
        let (from, to) = (op.source.dtype, op.destination.dtype)
        if from == to { return try copy(op.source, to: op.destination) }
        let k = try kernel("convert", file: "convert", options: "-D SRC_TYPE=\(from.kernelCode) -D DST_TYPE=\(to.kernelCode)")
        try launch(k, global: [op.source.count], [.tensor(op.source), .tensor(op.destination), .int(op.source.count)])
    }
}
