// How CPU ops split their work over the pool. Splits follow the data (rows, fixed-size chunks), never the
// thread count, so an op gives the same bits on any number of threads.

extension CPUBackend {
    /// Elements below which an op stays on the calling thread: waking workers costs more than it saves.
    static let parallelElements = 1 << 15
    /// Elements per chunk of a flat elementwise op.
    static let chunkElements = 1 << 14

    /// Calls `body` on ranges of rows that together cover `0..<rows`, across the pool when the work is large.
    func forEachRowRange(rows: Int, cols: Int, _ body: (Range<Int>) -> Void) {
        guard rows * cols >= Self.parallelElements, rows > 1 else { return body(0..<rows) }
        let parts = min(rows, 4 * pool.threadCount)
        pool.run(parts: parts) { part in body(share(part, of: parts, count: rows)) }
    }

    /// Calls `body` on fixed-size chunks covering `0..<count`, across the pool when the work is large.
    func forEachChunk(count: Int, _ body: (Range<Int>) -> Void) {
        guard count >= Self.parallelElements else { return body(0..<count) }
        let chunks = (count + Self.chunkElements - 1) / Self.chunkElements
        pool.run(parts: chunks) { chunk in
            body(chunk * Self.chunkElements..<min(count, (chunk + 1) * Self.chunkElements))
        }
    }
}

/// Σ a[i]·b[i], 16 lanes at a time in a fixed order.
@inline(__always) func dotProduct(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int) -> Float {
    var acc = Vector()
    let full = count & ~15
    for i in stride(from: 0, to: full, by: 16) { acc = multiplyAdd(acc, loadVector(a + i), loadVector(b + i)) }
    var sum = horizontalSum(acc)
    for i in full..<count { sum = multiplyAdd(sum, a[i], b[i]) }
    return sum
}
