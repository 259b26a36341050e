// CPU whole-tensor sums: fixed chunks of `chunkElements`, each summed in float over 16 lanes, and the chunk
// sums added in Double in chunk order. The order depends only on the element count, never on the threads.

extension CPUBackend {
    public func reduce(_ op: Reduction) throws {
        try requireOwned(op)
        let (x, count, squares) = (elements(op.x), op.x.count, op.kind == .sumOfSquares)
        let chunks = (count + Self.chunkElements - 1) / Self.chunkElements
        let partials = UnsafeMutablePointer<Float>.allocate(capacity: chunks)
        defer { partials.deallocate() }
        forEachPart(parts: chunks, work: count) { chunk in
            let start = chunk * Self.chunkElements
            partials[chunk] = Self.chunkSum(x + start, count: min(count - start, Self.chunkElements), squares: squares)
        }
        var total: Double = 0
        for chunk in 0..<chunks { total += Double(partials[chunk]) }
        let result = elements(op.result)
        result[0] = Float(op.accumulate ? Double(result[0]) + total : total)
    }

    /// Σ x or Σ x² over one chunk, four vectors wide so the adds do not wait on each other.
    static func chunkSum(_ x: UnsafeMutablePointer<Float>, count: Int, squares: Bool) -> Float {
        var acc = (Vector(), Vector(), Vector(), Vector())
        let full = count & ~63
        for j in stride(from: 0, to: full, by: 64) {
            let (a, b, c, d) = (loadVector(x + j), loadVector(x + j + 16), loadVector(x + j + 32), loadVector(x + j + 48))
            if squares {
                acc = (multiplyAdd(acc.0, a, a), multiplyAdd(acc.1, b, b), multiplyAdd(acc.2, c, c), multiplyAdd(acc.3, d, d))
            } else {
                acc = (acc.0 + a, acc.1 + b, acc.2 + c, acc.3 + d)
            }
        }
        var sum = horizontalSum((acc.0 + acc.1) + (acc.2 + acc.3))
        for j in full..<count { sum = squares ? multiplyAdd(sum, x[j], x[j]) : sum + x[j] }
        return sum
    }
}
