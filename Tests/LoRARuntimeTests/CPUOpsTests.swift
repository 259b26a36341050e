// The CPU backend against naive Double references, and the validation every op shares.
import Foundation
@testable import LoRARuntime
import LoRATestSupport
import Testing

@Suite("CPU ops")
struct CPUOpsTests {
    let cpu = CPUBackend.shared

    @Test("GEMM matches the naive triple loop", arguments: GEMMCaseList.all)
    func gemm(_ index: Int) throws {
        let c = GEMMCaseList.cases[index]
        let got = try c.run(on: cpu)
        #expect(firstMismatch(got, c.reference(), atol: 1e-4, rtol: 1e-4) == nil, "\(c)")
    }

    @Test("GEMM with beta 0 overwrites NaN in C")
    func gemmBetaZeroIgnoresC() throws {
        let a = try cpu.upload([1, 2, 3, 4], shape: [2, 2])
        let c = try cpu.upload([.nan, .nan, .nan, .nan], shape: [2, 2])
        try cpu.gemm(GEMM(a: a, b: a, c: c))
        #expect(try c.toArray() == [7, 10, 15, 22])
    }

    @Test("softmax matches the reference, with scale and causal mask",
          arguments: [([1, 1], false), ([3, 7], false), ([2, 3, 9, 9], true), ([4, 5, 13], true), ([2, 13, 5], true)])
    func softmax(shape: [Int], causal: Bool) throws {
        let values = randomValues(shape.reduce(1, *), seed: 7).map { $0 * 4 }
        let x = try cpu.upload(values, shape: shape)
        let y = try cpu.zeros(shape)
        try cpu.softmax(Softmax(x: x, y: y, scale: 0.7, causal: causal))
        let expected = referenceSoftmax(values, shape: shape, scale: 0.7, causal: causal)
        #expect(firstMismatch(try y.toArray(), expected, atol: 1e-6, rtol: 1e-5) == nil)
    }

    @Test("softmax in place equals out of place")
    func softmaxInPlace() throws {
        let values = randomValues(60, seed: 3)
        let x = try cpu.upload(values, shape: [6, 10])
        let y = try cpu.zeros([6, 10])
        try cpu.softmax(Softmax(x: x, y: y, causal: true))
        try cpu.softmax(Softmax(x: x, y: x, causal: true))
        #expect(try x.toArray() == y.toArray())
    }

    @Test("softmax backward matches finite differences", arguments: [false, true])
    func softmaxGradient(causal: Bool) throws {
        let shape = [2, 5, 7]
        let values = randomValues(70, seed: 11), weights = randomValues(70, seed: 12)
        let scale: Float = 0.8
        func loss(_ v: [Float]) throws -> Double {
            let x = try cpu.upload(v, shape: shape), y = try cpu.zeros(shape)
            try cpu.softmax(Softmax(x: x, y: y, scale: scale, causal: causal))
            return zip(try y.toArray(), weights).reduce(0) { $0 + Double($1.0) * Double($1.1) }
        }
        let x = try cpu.upload(values, shape: shape), y = try cpu.zeros(shape), dx = try cpu.zeros(shape)
        try cpu.softmax(Softmax(x: x, y: y, scale: scale, causal: causal))
        try cpu.softmaxBackward(SoftmaxBackward(y: y, dy: cpu.upload(weights, shape: shape), dx: dx, scale: scale))
        let analytic = try dx.toArray()
        if causal {  // with the mask, dy's masked entries are not read (NaN there changes nothing) and dx is 0 there
            let hidden = { (i: Int) in i % 7 > (i / 7) % 5 + 2 }  // [.., 5, 7]: row r sees keys j ≤ r + 2
            let masked = weights.indices.map { hidden($0) ? Float.nan : weights[$0] }
            let dxMasked = try cpu.zeros(shape)
            try cpu.softmaxBackward(SoftmaxBackward(y: y, dy: cpu.upload(masked, shape: shape), dx: dxMasked,
                                                    scale: scale, causal: true))
            #expect(try dxMasked.toArray() == analytic.indices.map { hidden($0) ? 0 : analytic[$0] })
        }
        let eps: Float = 1e-2
        for i in stride(from: 0, to: values.count, by: 3) {
            var plus = values, minus = values
            plus[i] += eps
            minus[i] -= eps
            let numeric = (try loss(plus) - loss(minus)) / Double(2 * eps)
            #expect(abs(numeric - Double(analytic[i])) <= 2e-3 + 1e-2 * abs(numeric), "x[\(i)]: \(analytic[i]) vs \(numeric)")
        }
    }

    @Test("LoRA projection matches the reference, with and without saving u", arguments: [1, 3, 8])
    func loraProjection(rank: Int) throws {
        let (n, inF, outF) = (5, 11, 13)
        let (xv, av, bv, yv) = (randomValues(n * inF, seed: 1), randomValues(rank * inF, seed: 2),
                                randomValues(outF * rank, seed: 3), randomValues(n * outF, seed: 4))
        let x = try cpu.upload(xv, shape: [n, inF]), a = try cpu.upload(av, shape: [rank, inF])
        let b = try cpu.upload(bv, shape: [outF, rank]), y = try cpu.upload(yv, shape: [n, outF])
        let u = try cpu.zeros([n, rank])
        try cpu.loraProject(LoRAProjection(x: x, a: a, b: b, scale: 1.75, y: y, u: u))
        var expectedU = [Double](repeating: 0, count: n * rank)
        var expectedY = yv.map(Double.init)
        for row in 0..<n {
            for q in 0..<rank {
                expectedU[row * rank + q] = (0..<inF).reduce(0.0) { $0 + Double(xv[row * inF + $1]) * Double(av[q * inF + $1]) }
            }
            for o in 0..<outF {
                expectedY[row * outF + o] += 1.75 * (0..<rank).reduce(0.0) { $0 + expectedU[row * rank + $1] * Double(bv[o * rank + $1]) }
            }
        }
        #expect(firstMismatch(try u.toArray(), expectedU) == nil)
        #expect(firstMismatch(try y.toArray(), expectedY) == nil)
        let y2 = try cpu.upload(yv, shape: [n, outF])
        try cpu.loraProject(LoRAProjection(x: x, a: a, b: b, scale: 1.75, y: y2))
        #expect(try y2.toArray() == y.toArray())
    }

    @Test("host memory is recycled by size class, zeros() clears what it reuses, and the cap holds")
    func hostMemoryPool() throws {
        let pool = HostMemoryPool(limit: 1 << 20)
        let (p, bytes) = try pool.allocate(bytes: 1000 * 4)
        #expect(bytes == HostMemoryPool.sizeClass(4000))
        pool.recycle(p, byteCount: bytes)
        #expect(pool.cachedBytes == bytes)
        let again = try pool.allocate(bytes: 990 * 4)  // same class: the same buffer
        #expect(again.pointer == p && pool.cachedBytes == 0)
        pool.recycle(again.pointer, byteCount: again.byteCount)
        let big = try pool.allocate(bytes: 2 << 20)  // beyond the cap: freed, not kept
        pool.recycle(big.pointer, byteCount: big.byteCount)
        #expect(pool.cachedBytes == bytes)
        pool.trim()
        #expect(pool.cachedBytes == 0)

        // A private pool, so no other test's tensors take or leave buffers in it: the NaNs' buffer must be the one
        // zeros() of the same size class gets back, and zeros() must clear it.
        let cpu = CPUBackend(memory: HostMemoryPool(limit: 1 << 20))
        let count = 123_457
        var nanBuffer: UnsafeMutableRawPointer?
        do {
            let nans = try cpu.upload([Float](repeating: .nan, count: count), shape: [count])
            nanBuffer = cpu.bytes(nans)
        }
        #expect(cpu.cachedMemoryBytes == HostMemoryPool.sizeClass(count * 4))
        let zeros = try cpu.zeros([count - 5])  // a smaller request of the same class
        #expect(cpu.bytes(zeros) == nanBuffer && cpu.cachedMemoryBytes == 0, "zeros() reused the NaNs' buffer")
        #expect(try zeros.toArray().allSatisfy { $0 == 0 })
    }

    @Test("a host allocation the system refuses throws outOfMemory naming the bytes, after returning the cache")
    func hostOutOfMemory() throws {
        let pool = HostMemoryPool(limit: 1 << 20)
        let small = try pool.allocate(bytes: 4096)
        pool.recycle(small.pointer, byteCount: small.byteCount)
        #expect(pool.cachedBytes == small.byteCount)
        // 2^60 bytes is beyond any x86-64 or arm64 address space: posix_memalign must refuse it.
        let huge = 1 << 60
        #expect(throws: LoRAError.outOfMemory(bytes: HostMemoryPool.sizeClass(huge), device: "host")) {
            try pool.allocate(bytes: huge)
        }
        #expect(pool.cachedBytes == 0, "the cached buffers went back to the system before the retry")
        #expect(throws: LoRAError.outOfMemory(bytes: Int.max, device: "host")) { try pool.allocate(bytes: Int.max) }
        // Still usable afterwards, and the message names the bytes.
        let after = try pool.allocate(bytes: 100)
        pool.recycle(after.pointer, byteCount: after.byteCount)
        #expect("\(LoRAError.outOfMemory(bytes: 123, device: "host"))" == "out of memory: 123 bytes on host")
    }

    @Test("bias add broadcasts over rows")
    func biasAdd() throws {
        let y = try cpu.upload([1, 2, 3, 4, 5, 6], shape: [2, 3])
        try cpu.addBias(BiasAdd(bias: cpu.upload([10, 20, 30], shape: [3]), y: y))
        #expect(try y.toArray() == [11, 22, 33, 14, 25, 36])
    }

    @Test("axpy adds a scaled tensor")
    func axpy() throws {
        let y = try cpu.upload([1, 2, 3], shape: [3])
        try cpu.axpy(Axpy(alpha: -2, x: cpu.upload([0.5, 1, -1], shape: [3]), y: y))
        #expect(try y.toArray() == [0, 0, 5])
        #expect(throws: LoRAError.self) { try Axpy(alpha: 1, x: cpu.zeros([2]), y: y) }
    }
}

/// Makes the awkward cases usable as test arguments (by index: GEMMCase holds no tensors but is large to print).
enum GEMMCaseList {
    static let cases = GEMMCase.awkward
    static let all = Array(cases.indices)
}

/// Naive softmax in Double with the same mask rule as `Softmax`.
func referenceSoftmax(_ x: [Float], shape: [Int], scale: Float, causal: Bool) -> [Double] {
    let cols = shape.last!
    let queries = causal ? shape[shape.count - 2] : 1
    var out = [Double](repeating: 0, count: x.count)
    for r in 0..<(x.count / cols) {
        let visible = causal ? max(0, min(cols, r % queries + cols - queries + 1)) : cols
        guard visible > 0 else { continue }
        let row = (0..<visible).map { Double(scale) * Double(x[r * cols + $0]) }
        let m = row.max()!
        let e = row.map { Foundation.exp($0 - m) }
        let s = e.reduce(0, +)
        for j in 0..<visible { out[r * cols + j] = e[j] / s }
    }
    return out
}
