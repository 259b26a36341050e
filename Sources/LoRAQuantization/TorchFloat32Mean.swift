// torch's float32 `mean()` of a contiguous 1-D tensor on the CPU, bit for bit: double quantization subtracts the
// mean of the blocks' absmax (`nested_offset`), so its exact float32 value decides every absmax code.
//
// torch computes `sum / n` (a float32 division). The sum is ATen's `cascade_sum` (SumKernel.cpp) with float32
// accumulators (`acc_type<float, true>`): the row is read as vectors of 8 floats (the sum kernel runs with 8-wide
// vectors even on AVX-512 CPUs, measured against torch 2.13), vectors are summed by `row_sum` (4 interleaved
// accumulators, each a 4-level cascade of chunks of 16 or more), the leftover elements are added one by one to 0,
// then the 8 lanes. Below 8 elements the same `row_sum` runs on scalars. Past 32768 elements (the grain size) and
// with more than one thread, torch splits the row into equal chunks, one per thread (at most ceil(n / 32768) of
// them), sums each as above into a per-thread slot and sums the slots the same way: the result then depends on
// `torch.get_num_threads()`.

/// torch's float32 mean of `values`, as computed with `threads` intra-op threads.
/// - Parameter threads: `torch.get_num_threads()` of the run to reproduce; it matters only above 32768 elements.
func torchFloat32Mean(_ values: UnsafeBufferPointer<Float>, threads: Int = 1) -> Float {
    precondition(!values.isEmpty && threads >= 1, "torchFloat32Mean: \(values.count) values, \(threads) threads")
    return torchFloat32Sum(values, threads: threads) / Float(values.count)
}

/// torch's float32 `sum()` of a contiguous 1-D tensor (see the file header).
func torchFloat32Sum(_ values: UnsafeBufferPointer<Float>, threads: Int = 1) -> Float {
    let n = values.count
    let grain = 32768
    guard n >= grain, threads > 1 else { return 0 + chunkSum(values) }
    let tasks = min(threads, (n + grain - 1) / grain)
    let chunk = (n + tasks - 1) / tasks
    var slots = [Float](repeating: 0, count: threads)
    for t in 0..<tasks where t * chunk < n {
        slots[t] += chunkSum(UnsafeBufferPointer(rebasing: values[(t * chunk)..<min(n, (t + 1) * chunk)]))
    }
    return slots.withUnsafeBufferPointer { 0 + chunkSum($0) }
}

/// One call of cascade_sum's inner loop over a contiguous run: vectorized when it holds a whole vector.
private func chunkSum(_ x: UnsafeBufferPointer<Float>) -> Float {
    let width = 8
    let n = x.count
    guard n >= width else { return rowSum(count: n) { x[$0] } }
    let vectors = n / width
    let lanes = rowSum(count: vectors) { i in SIMD8<Float>(x[(i * width)..<(i * width + width)]) }
    var total: Float = 0
    for k in (vectors * width)..<n { total += x[k] }
    for k in 0..<width { total += lanes[k] }
    return total
}

/// Elements that can be summed the way `row_sum` sums them: Float or a SIMD vector of them.
private protocol CascadeElement { static var zero: Self { get }; static func + (a: Self, b: Self) -> Self }
extension Float: CascadeElement {}
extension SIMD8: CascadeElement where Scalar == Float {}

/// ATen's `row_sum`: the row as `count / 4` rows of 4 (`multi_row_sum`), the remainder added to the first
/// accumulator, then the 4 accumulators added in order.
private func rowSum<T: CascadeElement>(count: Int, _ load: (Int) -> T) -> T {
    let ilp = 4
    let rows = count / ilp
    var partial = multiRowSum(rows: rows) { i, k in load(i * ilp + k) }
    for i in (rows * ilp)..<count { partial[0] = partial[0] + load(i) }
    for k in 1..<ilp { partial[0] = partial[0] + partial[k] }
    return partial[0]
}

/// ATen's `multi_row_sum` for 4 interleaved accumulators: level 0 takes `2^p` rows at a time (p = max(4,
/// ceil(log2 rows) / 4)), then carries into levels 1...3 until a level's counter is not at a chunk boundary.
private func multiRowSum<T: CascadeElement>(rows size: Int, _ load: (Int, Int) -> T) -> [T] {
    let levels = 4, ilp = 4
    let ceilLog2 = size <= 2 ? 1 : Int.bitWidth - (size - 1).leadingZeroBitCount
    let power = max(4, ceilLog2 / levels)
    let step = 1 << power, mask = step - 1
    var acc = [[T]](repeating: [T](repeating: .zero, count: ilp), count: levels)
    var i = 0
    while i + step <= size {
        for _ in 0..<step {
            for k in 0..<ilp { acc[0][k] = acc[0][k] + load(i, k) }
            i += 1
        }
        for j in 1..<levels {
            for k in 0..<ilp {
                acc[j][k] = acc[j][k] + acc[j - 1][k]
                acc[j - 1][k] = .zero
            }
            if i & (mask << (j * power)) != 0 { break }
        }
    }
    while i < size {
        for k in 0..<ilp { acc[0][k] = acc[0][k] + load(i, k) }
        i += 1
    }
    for j in 1..<levels {
        for k in 0..<ilp { acc[0][k] = acc[0][k] + acc[j][k] }
    }
    return acc[0]
}
