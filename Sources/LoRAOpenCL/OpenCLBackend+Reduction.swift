// OpenCL whole-tensor sums: Kernels/reduction.cl, a fixed number of work-groups (from the element count
// only) each leaving a partial, then one work-group adding the partials in order.
import LoRARuntime

extension OpenCLBackend {
    /// Most work-groups of the first pass: enough to fill a GPU, few enough for one group to add up.
    static let reductionGroups = 256

    public func reduce(_ op: Reduction) throws {
        try requireOwned(op)
        let count = op.x.count
        let partialKernel = try kernel("reduce_partials", file: "reduction")
        let group = try rowGroupSize(partialKernel, cols: count)
        let groups = min(Self.reductionGroups, (count + group - 1) / group)
        let partials = try empty([groups])
        try launch(partialKernel, global: [groups * group], local: [group], [
            .tensor(op.x), .tensor(partials), .int(count), .int(op.kind == .sumOfSquares ? 1 : 0),
        ])
        let finalKernel = try kernel("reduce_final", file: "reduction")
        let finalGroup = try rowGroupSize(finalKernel, cols: groups)
        try launch(finalKernel, global: [finalGroup], local: [finalGroup], [
            .tensor(partials), .tensor(op.result), .int(groups), .int(op.accumulate ? 1 : 0),
        ])
    }
}
