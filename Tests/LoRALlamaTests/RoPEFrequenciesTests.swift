// RoPE tables against transformers 5.24 (Tests/Fixtures/llama-rope/rope.safetensors): inv_freq bitwise, cos/sin
// within 1 ulp (2 where YaRN scales them). Why not bitwise: torch's float32 cos/sin are SLEEF's 1-ulp kernels (plus the C library on a
// tail), ours the correctly rounded double result rounded to float; the angles themselves are bitwise equal.
import Foundation
import LoRAFormats
import Testing
@testable import LoRALlama

@Suite struct RoPEFrequenciesTests {
    static let file = Result { try SafeTensorsFile(path: llamaFixtures + "/rope.safetensors") }

    /// The distance between a and b in units of b's ulp (for b = 0, of the smallest normal float).
    static func ulps(_ a: Float, _ b: Float) -> Float {
        abs(a - b) / max(b.magnitude.ulp, Float.leastNormalMagnitude)
    }

    @Test func inverseFrequenciesAndTablesMatchTransformers() throws {
        let file = try Self.file.get()
        let positions = try file.integers("positions")
        let cases = try ConfigCase.all().filter(\.ropeCase)
        #expect(cases.count >= 11)
        var worst: Float = 0, exact = 0, total = 0
        for c in cases {
            let config = try LlamaConfig(json: c.config, path: c.name)
            let half = config.headDim / 2
            let inverse = try file.floats("\(c.name).inv_freq")
            #expect(config.inverseFrequencies().map(\.bitPattern) == inverse.map(\.bitPattern), Comment(rawValue: c.name))

            let (cos, sin) = config.cosSinTables(positions: positions)
            let expectedCos = try file.floats("\(c.name).cos"), expectedSin = try file.floats("\(c.name).sin")
            #expect(cos.count == positions.count * half && expectedCos.count == cos.count, Comment(rawValue: c.name))
            total += 2 * cos.count
            for i in cos.indices {
                let error = max(Self.ulps(cos[i], expectedCos[i]), Self.ulps(sin[i], expectedSin[i]))
                worst = max(worst, error)
                exact += (cos[i] == expectedCos[i] ? 1 : 0) + (sin[i] == expectedSin[i] ? 1 : 0)
                // 1 ulp apart before the scale; the float32 multiply by attention_scaling can add one more.
                if error > (config.attentionScaling == 1 ? 1 : 2) {
                    let at = "\(c.name) position \(positions[i / half]) frequency \(i % half)"
                    Issue.record(Comment(rawValue: "\(at): cos \(cos[i]) vs \(expectedCos[i]), sin \(sin[i]) vs \(expectedSin[i]) (\(error) ulp)"))
                    break
                }
            }
        }
        print("RoPE cos/sin against transformers: \(exact) of \(total) bitwise equal, worst \(worst) ulp")
    }

    @Test func tablesStartAtTheScaledIdentityAndRepeatPerPosition() throws {
        let config = try LlamaConfig(json: tinyLlama(["rope_scaling": .object([
            "rope_type": .string("yarn"), "factor": .number(4), "original_max_position_embeddings": .integer(1024)])]),
                                     path: "config.json")
        let scale = config.attentionScaling
        #expect(scale == Float(0.1 * Foundation.log(4.0) + 1))
        let (cos, sin) = config.cosSinTables(positions: 3)
        #expect(cos.count == 3 * 8 && sin.count == 3 * 8)
        #expect(cos[0..<8].allSatisfy { $0 == scale } && sin[0..<8].allSatisfy { $0 == 0 })
        let (cosAt, _) = config.cosSinTables(positions: [2])
        #expect(Array(cos[16..<24]) == cosAt)
    }

    @Test func defaultFrequenciesAreThetaPowers() throws {
        // Within 1 ulp of the exact θ^(−2i/d) (torch's pow is not correctly rounded, hence not bitwise).
        let config = try LlamaConfig(json: tinyLlama(["rope_theta": .number(10000), "hidden_size": .integer(512)]),
                                     path: "config.json")
        let inverse = config.inverseFrequencies()
        #expect(inverse.count == 64 && inverse[0] == 1)
        for (i, f) in inverse.enumerated() {
            let exact = Foundation.pow(10000.0, -Double(Float(2 * i) / 128))
            #expect(abs(Double(f) - exact) <= 1.5 * Double(Float(exact).ulp), "frequency \(i)")
        }
    }

    @Test func sleefPowMatchesCorrectlyRoundedPowWithinOneUlp() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<20000 {
            let x = Float.random(in: 1.0001...1e7, using: &generator), y = Float.random(in: -1...1, using: &generator)
            let exact = Foundation.pow(Double(x), Double(y))
            let got = SleefFloat.pow(x, y)
            #expect(abs(Double(got) - exact) <= Double(Float(exact).ulp), "\(x)^\(y) = \(got), exact \(exact)")
        }
    }
}
