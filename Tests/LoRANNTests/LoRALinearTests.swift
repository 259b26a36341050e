// LoRALinear on every device: B = 0 is the base layer, merged equals unmerged, merge-unmerge restores W0,
// gradients match finite differences, and nothing reaches the frozen weight. OpenCL results are also
// compared with the CPU's.
import Foundation
import LoRATestSupport
import SwiftLoRA
import Testing

/// A layer with fixed random weights and a non-zero B on `backend`.
struct LayerFixture {
    static let (rows, inF, outF) = (6, 13, 11)
    let weight: [Float], bias: [Float], b: [Float], x: [Float], dy: [Float]

    init() {
        weight = randomValues(Self.inF * Self.outF, seed: 21)
        bias = randomValues(Self.outF, seed: 22)
        b = randomValues(Self.outF * 4, seed: 23)
        x = randomValues(Self.rows * Self.inF, seed: 24)
        dy = randomValues(Self.rows * Self.outF, seed: 25)
    }

    func layer(on backend: any Backend, layout: DenseLinear.Layout = .outIn, rank: Int = 4, alpha: Float = 7,
               nonZeroB: Bool = true) throws -> LoRALinear {
        let shape = layout == .outIn ? [Self.outF, Self.inF] : [Self.inF, Self.outF]
        let w = layout == .outIn ? weight : transpose(weight, rows: Self.outF, cols: Self.inF)
        let layer = try LoRALinear(weight: backend.upload(w, shape: shape), bias: backend.upload(bias, shape: [Self.outF]),
                                   layout: layout, rank: rank, alpha: alpha, seed: 5)
        if nonZeroB { try backend.copy(backend.upload(Array(b.prefix(Self.outF * rank)), shape: [Self.outF, rank]), to: layer.loraB) }
        return layer
    }
}

func transpose(_ m: [Float], rows: Int, cols: Int) -> [Float] {
    var out = [Float](repeating: 0, count: m.count)
    for i in 0..<rows { for j in 0..<cols { out[j * rows + i] = m[i * cols + j] } }
    return out
}

@Suite("LoRALinear")
struct LoRALinearTests {
    let fixture = LayerFixture()

    @Test("OpenCL and CPU: B = 0 reproduces the base layer")
    func zeroBIsBase() throws {
        for backend in try TestDevices.all() {
            let layer = try fixture.layer(on: backend, nonZeroB: false)
            let x = try backend.upload(fixture.x, shape: [2, 3, LayerFixture.inF])
            let y = try layer.forward(x)
            #expect(y.shape == [2, 3, LayerFixture.outF])
            var expected = [Double]()
            for r in 0..<LayerFixture.rows {
                for o in 0..<LayerFixture.outF {
                    expected.append(Double(fixture.bias[o]) + (0..<LayerFixture.inF).reduce(0.0) {
                        $0 + Double(fixture.x[r * LayerFixture.inF + $1]) * Double(fixture.weight[o * LayerFixture.inF + $1])
                    })
                }
            }
            #expect(firstMismatch(try y.toArray(), expected, atol: 1e-5, rtol: 1e-5) == nil, "\(backend.name)")
        }
    }

    @Test("OpenCL and CPU: merged forward equals unmerged, and unmerge restores W0 (alpha != r)",
          arguments: [DenseLinear.Layout.outIn, .inOut])
    func mergeRoundTrip(layout: DenseLinear.Layout) throws {
        for backend in try TestDevices.all() {
            let layer = try fixture.layer(on: backend, layout: layout, alpha: 7)
            let w0 = try (layer.base as! DenseLinear).weight.toArray()
            let x = try backend.upload(fixture.x, shape: [LayerFixture.rows, LayerFixture.inF])
            let unmerged = try layer.forward(x).toArray()
            try layer.merge()
            #expect(layer.isMerged)
            #expect(try (layer.base as! DenseLinear).weight.toArray() != w0)
            #expect(firstMismatch(try layer.forward(x).toArray(), unmerged, atol: 1e-5, rtol: 1e-5) == nil, "\(backend.name)")
            #expect(throws: LoRAError.self) { try layer.merge() }
            #expect(throws: LoRAError.self) { try layer.backward(backend.zeros([LayerFixture.rows, LayerFixture.outF])) }
            try layer.unmerge()
            #expect(firstMismatch(try (layer.base as! DenseLinear).weight.toArray(), w0, atol: 1e-6, rtol: 1e-6) == nil, "\(backend.name)")
            #expect(throws: LoRAError.self) { try layer.unmerge() }
        }
    }

    @Test("OpenCL and CPU: both weight layouts give the same output and gradients")
    func layouts() throws {
        for backend in try TestDevices.all() {
            var results: [[Float]] = []
            for layout in [DenseLinear.Layout.outIn, .inOut] {
                let layer = try fixture.layer(on: backend, layout: layout)
                let y = try layer.forward(backend.upload(fixture.x, shape: [LayerFixture.rows, LayerFixture.inF]))
                let dx = try layer.backward(backend.upload(fixture.dy, shape: [LayerFixture.rows, LayerFixture.outF]))
                results.append(try y.toArray() + dx.toArray() + layer.gradA.toArray() + layer.gradB.toArray())
            }
            #expect(firstMismatch(results[0], results[1], atol: 1e-5, rtol: 1e-5) == nil, "\(backend.name)")
        }
    }

    @Test("OpenCL and CPU: gradients without dx equal backward's")
    func gradientsWithoutInput() throws {
        for backend in try TestDevices.all() {
            var results: [[Float]] = []
            for full in [true, false] {
                let layer = try fixture.layer(on: backend, rank: 4)
                _ = try layer.forward(backend.upload(fixture.x, shape: [LayerFixture.rows, LayerFixture.inF]))
                let dy = try backend.upload(fixture.dy, shape: [LayerFixture.rows, LayerFixture.outF])
                if full { _ = try layer.backward(dy) } else { try layer.accumulateGradients(dy) }
                results.append(try layer.gradA.toArray() + layer.gradB.toArray())
            }
            #expect(results[0] == results[1], "\(backend.name)")
            #expect(results[0].contains { $0 != 0 })
        }
    }

    @Test("OpenCL and CPU: gradients match finite differences, W0 gets none", arguments: [1, 4])
    func gradients(rank: Int) throws {
        for backend in try TestDevices.all() {
            let layer = try fixture.layer(on: backend, rank: rank)
            let w0 = try (layer.base as! DenseLinear).weight.toArray()
            let xShape = [LayerFixture.rows, LayerFixture.inF]
            // L = Σ dy ⊙ y, so dL/dy = dy.
            func loss(x: [Float]) throws -> Double {
                let y = try layer.forward(backend.upload(x, shape: xShape)).toArray()
                return zip(y, fixture.dy).reduce(0) { $0 + Double($1.0) * Double($1.1) }
            }
            _ = try layer.forward(backend.upload(fixture.x, shape: xShape))
            try layer.zeroGradients()
            let dx = try layer.backward(backend.upload(fixture.dy, shape: [LayerFixture.rows, LayerFixture.outF])).toArray()
            let (gradA, gradB) = (try layer.gradA.toArray(), try layer.gradB.toArray())
            let eps: Float = 1e-2
            func check(_ analytic: [Float], _ what: String, perturb: (Int, Float) throws -> Double) throws {
                for i in stride(from: 0, to: analytic.count, by: max(1, analytic.count / 17)) {
                    let numeric = (try perturb(i, eps) - perturb(i, -eps)) / Double(2 * eps)
                    #expect(abs(numeric - Double(analytic[i])) <= 2e-3 + 1e-3 * abs(numeric),
                            "\(backend.name) \(what)[\(i)]: \(analytic[i]) vs \(numeric)")
                }
            }
            try check(dx, "dx") { i, e in var x = fixture.x; x[i] += e; return try loss(x: x) }
            for (param, grad, name) in [(layer.loraA, gradA, "dA"), (layer.loraB, gradB, "dB")] {
                let original = try param.toArray()
                try check(grad, name) { i, e in
                    var v = original
                    v[i] += e
                    try backend.copy(backend.upload(v, shape: param.shape), to: param)
                    defer { try? backend.copy(backend.upload(original, shape: param.shape), to: param) }
                    return try loss(x: fixture.x)
                }
            }
            #expect(try (layer.base as! DenseLinear).weight.toArray() == w0, "the frozen weight changed")
            #expect(layer.parameters.map(\.name) == ["lora_A.weight", "lora_B.weight"])
        }
    }

    @Test("OpenCL layer output and gradients equal the CPU's", .enabled(if: TestDevices.runOpenCL, "\(TestDevices.skipReason)"))
    func openCLMatchesCPU() throws {
        let results = try TestDevices.all().map { backend -> [Float] in
            let layer = try fixture.layer(on: backend)
            let y = try layer.forward(backend.upload(fixture.x, shape: [LayerFixture.rows, LayerFixture.inF]))
            let dx = try layer.backward(backend.upload(fixture.dy, shape: [LayerFixture.rows, LayerFixture.outF]))
            return try y.toArray() + dx.toArray() + layer.gradA.toArray() + layer.gradB.toArray()
        }
        #expect(results.count == 2)
        #expect(firstMismatch(results[1], results[0], atol: 1e-5, rtol: 1e-4) == nil)
    }

    @Test("OpenCL and CPU: with dropout in training, the low-rank path sees the mask and backward applies it")
    func dropout() throws {
        let (n, inF, outF, r) = (LayerFixture.rows, LayerFixture.inF, LayerFixture.outF, 4)
        for backend in try TestDevices.all() {
            let w = try backend.upload(fixture.weight, shape: [outF, inF]), bias = try backend.upload(fixture.bias, shape: [outF])
            let layer = try LoRALinear(weight: w, bias: bias, rank: r, alpha: 7, dropout: 0.4, seed: 5)
            try backend.copy(backend.upload(Array(fixture.b.prefix(outF * r)), shape: [outF, r]), to: layer.loraB)
            let x = try backend.upload(fixture.x, shape: [n, inF])
            // Not training: no mask.
            let plain = try layer.forward(x).toArray()
            #expect(layer.lastDropoutSeed == nil)
            layer.training = true
            let y = try layer.forward(x).toArray()
            let seed = try #require(layer.lastDropoutSeed)
            #expect(y != plain && layer.nextDropoutSeed != seed)
            let dx = try layer.backward(backend.upload(fixture.dy, shape: [n, outF])).toArray()
            // Reference in Double from the same mask: D(x) = x·keep/(1 − p).
            let masked = try backend.empty([n, inF])
            try backend.dropout(Dropout(x: x, y: masked, probability: 0.4, seed: seed))
            let xd = try masked.toArray().map(Double.init), a = try layer.loraA.toArray().map(Double.init)
            let b = Array(fixture.b.prefix(outF * r)).map(Double.init), s = Double(layer.scale)
            let keep = (0..<(n * inF)).map { Dropout.hash(UInt32($0), seed: seed) >= (try! Dropout(x: x, y: x, probability: 0.4, seed: 0)).threshold }
            func u(_ i: Int, _ q: Int) -> Double { (0..<inF).reduce(0) { $0 + xd[i * inF + $1] * a[q * inF + $1] } }
            func g(_ i: Int, _ q: Int) -> Double { (0..<outF).reduce(0) { $0 + Double(fixture.dy[i * outF + $1]) * b[$1 * r + q] } }
            var (expectedY, expectedDX) = ([Double](), [Double]())
            for i in 0..<n {
                for o in 0..<outF {
                    let base = (0..<inF).reduce(Double(fixture.bias[o])) { $0 + Double(fixture.x[i * inF + $1]) * Double(fixture.weight[o * inF + $1]) }
                    expectedY.append(base + s * (0..<r).reduce(0) { $0 + u(i, $1) * b[o * r + $1] })
                }
                for c in 0..<inF {
                    let dense = (0..<outF).reduce(0.0) { $0 + Double(fixture.dy[i * outF + $1]) * Double(fixture.weight[$1 * inF + c]) }
                    let low = s * (0..<r).reduce(0) { $0 + g(i, $1) * a[$1 * inF + c] }
                    expectedDX.append(dense + (keep[i * inF + c] ? low / 0.6 : 0))
                }
            }
            let expectedDA = (0..<(r * inF)).map { k in s * (0..<n).reduce(0) { $0 + g($1, k / inF) * xd[$1 * inF + k % inF] } }
            #expect(firstMismatch(y, expectedY, atol: 1e-5, rtol: 1e-4) == nil, "\(backend.name)")
            #expect(firstMismatch(dx, expectedDX, atol: 1e-5, rtol: 1e-4) == nil, "\(backend.name)")
            #expect(firstMismatch(try layer.gradA.toArray(), expectedDA, atol: 1e-5, rtol: 1e-4) == nil, "\(backend.name)")
        }
    }

    @Test("a rank larger than the layer, bad shapes and misuse are clear errors")
    func badInput() throws {
        let cpu = CPUBackend.shared
        let w = try cpu.zeros([4, 8])
        let big = #expect(throws: LoRAError.self) { try LoRALinear(weight: w, rank: 5, alpha: 8) }
        #expect(big?.description.contains("rank 5") == true)
        #expect(throws: LoRAError.self) { try LoRALinear(weight: w, rank: 0, alpha: 8) }
        #expect(throws: LoRAError.self) { try LoRALinear(weight: w, bias: cpu.zeros([8]), rank: 2, alpha: 8) }
        let layer = try LoRALinear(weight: w, rank: 2, alpha: 8)
        #expect(throws: LoRAError.self) { try layer.backward(cpu.zeros([1, 4])) }
        #expect(throws: LoRAError.self) { try layer.forward(cpu.zeros([3, 7])) }
        _ = try layer.forward(cpu.zeros([3, 8]))
        #expect(throws: LoRAError.self) { try layer.backward(cpu.zeros([2, 4])) }
    }

    @Test("scale is alpha/r, or alpha/√r with rsLoRA; A is Kaiming-uniform and B zero")
    func initialization() throws {
        let w = try CPUBackend.shared.zeros([16, 64])
        let plain = try LoRALinear(weight: w, rank: 4, alpha: 8)
        let rs = try LoRALinear(weight: w, rank: 4, alpha: 8, useRSLoRA: true)
        #expect(plain.scale == 2 && rs.scale == 4)
        let a = try plain.loraA.toArray()
        #expect(a.allSatisfy { abs($0) <= 1 / 8 } && a.contains { $0 != 0 })
        #expect(try plain.loraB.toArray().allSatisfy { $0 == 0 })
        let gaussian = try LoRALinear(weight: w, rank: 4, alpha: 8, initialization: .gaussian).loraA.toArray()
        let std = (gaussian.reduce(0) { $0 + $1 * $1 } / Float(gaussian.count)).squareRoot()
        #expect(abs(std - 0.25) < 0.03)
    }
}
