// The built `lora-serve` executable as a subprocess: it prints its port, serves, and on SIGTERM lets the streams in
// flight run to their end before it exits 0.
import Foundation
import LoRAFormats
import Testing

@Suite("lora-serve executable")
struct SignalTests {
    /// The `lora-serve` built beside the test bundle (`swift build --build-tests` and `swift test` build it).
    static var binary: String? {
        let beside = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("lora-serve").path
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return [beside, root.appendingPathComponent(".build/debug/lora-serve").path].first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    @Test("SIGTERM: streams in flight finish, then the process exits 0")
    func sigtermDrains() async throws {
        let binary = try #require(Self.binary, "lora-serve is not built beside the tests")
        let fixture = try ServerFixture()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["--model", ServerFixture.folder, "--served-model-name", "tiny", "--adapter", "second=\(fixture.adapters[1].folder)",
                             "--port", "0", "--device", "cpu", "--max-batch", "1"]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
        // The first line names the port.
        let line: String = try await withCheckedThrowingContinuation { continuation in
            Thread {
                var text = ""
                while !text.contains("\n") {
                    let data = output.fileHandleForReading.availableData
                    if data.isEmpty { break }
                    text += String(decoding: data, as: UTF8.self)
                }
                continuation.resume(returning: text)
            }.start()
        }
        let port = try #require(line.range(of: #"127\.0\.0\.1:(\d+)"#, options: .regularExpression)
            .flatMap { Int(line[$0].split(separator: ":")[1]) }, "first line: \(line)")
        let heads = AsyncCounter()
        let prompts = (0..<3).map { fixture.prompt(UInt64(50 + $0), length: 3) }
        let streams = (0..<3).map { i in
            Task {
                try await HTTPTestClient.send(port: port, "POST", "/v1/completions", body: completion(
                    i == 1 ? "tiny" : "second", prompt: prompts[i], maxTokens: 50, extra: #", "stream": true, "return_token_ids": true"#),
                    onFirstBytes: { heads.increment() })
            }
        }
        try await waitUntil("the three streams' first bytes") { heads.value == 3 }
        kill(process.processIdentifier, SIGTERM)
        for (i, stream) in streams.enumerated() {
            let reply = try await stream.value
            let expected = try fixture.alone(i == 1 ? nil : 1, prompt: prompts[i], maxTokens: 50)
            #expect(reply.status == 200 && reply.streamed.done, "stream \(i): \(reply.text.suffix(200))")
            #expect(reply.streamed.ids == expected.ids, "stream \(i)")
        }
        let status: Int32 = await withCheckedContinuation { continuation in
            Thread {
                process.waitUntilExit()
                continuation.resume(returning: process.terminationStatus)
            }.start()
        }
        let rest = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(process.terminationReason == .exit && status == 0)
        #expect(rest.contains("lora-serve: stopped"))
    }
}
