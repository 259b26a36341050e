// The fast CPU path: the packed GEMM across its cache-block boundaries and in-place operand paths, and results
// that do not depend on the thread count.
import LoRARuntime
import LoRATestSupport
import Testing

@Suite("CPU fast path")
struct CPUParallelTests {
    /// Shapes that cross mc (128), kc (768) and nc (2048), leave ragged tiles, or take the in-place paths
    /// (n ≤ 128 with row-major A; m ≤ 32 with row-major B), in every transpose combination.
    static let blockCases: [GEMMCase] = [
        GEMMCase(m: 137, n: 2085, k: 790, beta: 0.5),
        GEMMCase(m: 137, n: 2085, k: 790, transposeA: true, transposeB: true, alpha: -1.5),
        GEMMCase(m: 261, n: 19, k: 1030, pad: 3),
        GEMMCase(m: 141, n: 100, k: 800, beta: 0.5, pad: 2), GEMMCase(m: 141, n: 128, k: 790, transposeB: true),
        GEMMCase(m: 261, n: 19, k: 1030, transposeB: true),
        GEMMCase(m: 20, n: 700, k: 780, beta: 1, pad: 2, offset: 5),
        GEMMCase(m: 20, n: 700, k: 780, transposeA: true),
        GEMMCase(m: 1, n: 3001, k: 40), GEMMCase(m: 3001, n: 1, k: 40, transposeA: true),
        GEMMCase(m: 33, n: 33, k: 1100, batch: 3, beta: 0.25),
        // Wider than tall: A read in place with a ragged last tile; A too large to pack whole (packed a block of
        // k at a time).
        GEMMCase(m: 45, n: 120, k: 530, transposeB: true, beta: 0.5),
        GEMMCase(m: 96, n: 200, k: 22000, transposeA: true, alpha: 0.5, beta: 1),
        // Wider than tall with a row-major B packed whole, a row at a time (ragged last panel, k over two blocks).
        GEMMCase(m: 70, n: 300, k: 800, beta: 0.5, pad: 3), GEMMCase(m: 45, n: 120, k: 530, transposeA: true),
    ]

    @Test("packed GEMM matches the naive loop across cache blocks and in-place operand paths",
          arguments: blockCases.indices)
    func blockBoundaries(_ index: Int) throws {
        let c = Self.blockCases[index]
        let got = try c.run(on: CPUBackend.shared)
        #expect(firstMismatch(got, c.reference(), atol: 1e-3, rtol: 1e-4) == nil, "\(c)")
    }

    @Test("GEMM is bitwise identical on 1, 2 and 3 threads",
          arguments: [GEMMCase(m: 300, n: 280, k: 800), GEMMCase(m: 16, n: 1500, k: 800, transposeB: true),
                      GEMMCase(m: 96, n: 200, k: 22000), GEMMCase(m: 45, n: 120, k: 530, transposeB: true),
                      GEMMCase(m: 70, n: 300, k: 800), GEMMCase(m: 70, n: 300, k: 800, transposeA: true),
                      GEMMCase(m: 64, n: 64, k: 64, batch: 12)])
    func threadCountInvariance(_ c: GEMMCase) throws {
        let results = try [1, 2, 3].map { try c.run(on: CPUBackend(pool: ThreadPool(threadCount: $0))) }
        #expect(results[0] == results[1] && results[1] == results[2], "\(c)")
    }

    @Test("the pool runs every part exactly once, nested and concurrent calls included")
    func poolRunsEveryPart() async throws {
        let pool = ThreadPool(threadCount: 3)
        let counts = UnsafeMutableBufferPointer<Int>.allocate(capacity: 1000)
        counts.initialize(repeating: 0)
        defer { counts.deallocate() }
        let base = counts.baseAddress!
        pool.run(parts: 1000) { part in
            base[part] += 1
            // An op inside a part runs its own parts inline rather than deadlocking.
            var inner = 0
            pool.run(parts: 4) { _ in inner += 1 }
            precondition(inner == 4)
        }
        #expect(counts.allSatisfy { $0 == 1 })
        // Two callers at once: one gets the pool, the other runs its parts itself; both finish all parts.
        let totals = await withTaskGroup(of: Int.self) { group in
            for _ in 0..<2 {
                group.addTask {
                    let slots = UnsafeMutableBufferPointer<Int>.allocate(capacity: 64)
                    slots.initialize(repeating: 0)
                    defer { slots.deallocate() }
                    let p = slots.baseAddress!
                    for _ in 0..<50 { pool.run(parts: 64) { p[$0] += 1 } }
                    return slots.reduce(0, +)
                }
            }
            return await group.reduce(0, +)
        }
        #expect(totals == 2 * 50 * 64)
    }
}
