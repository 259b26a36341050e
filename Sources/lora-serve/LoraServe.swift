// `lora-serve`: an OpenAI-compatible HTTP server for a model and many LoRA adapters at once (LoRAServer). Requests
// on different adapters decode together in one batch; adapters load and unload at run time. SIGTERM or SIGINT lets
// the requests in flight finish, then exits 0.
import ArgumentParser
import Foundation
import LoRACommandLine
import LoRAServer
import Logging
import SwiftLoRA

@main
struct LoraServe: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lora-serve",
        abstract: "Serve a model and many LoRA adapters over an OpenAI-compatible HTTP API, batched across adapters.",
        discussion: """
            Endpoints: GET /v1/models, POST /v1/completions (OpenAI's fields, "stream": true for server-sent events,
            vLLM's top_k, stop_token_ids and return_token_ids), POST /v1/load_lora_adapter and
            /v1/unload_lora_adapter ({"lora_name", "lora_path"}, vLLM's convention). A request's "model" is the
            served model name (the base model) or an adapter's name.
            """)

    @Option(help: "A Hugging Face model folder with its tokenizer.") var model: String
    @Option(help: "NAME=DIR: a PEFT LoRA adapter served as model NAME; repeat for each adapter.") var adapter: [String] = []
    @Option(help: "Most requests decoded at once (the rest wait for a free row).") var maxBatch = 8
    @Option(help: "Most adapters loaded at once, those given here and those loaded at run time.") var maxLoras = 8
    @Option(help: "The address to listen on.") var host = "127.0.0.1"
    @Option(help: "The port to listen on (0: any free port; the chosen one is printed).") var port = 8000
    @Option(help: "The base model's name in requests and /v1/models (default: the model folder's name).") var servedModelName: String?
    @OptionGroup var device: DeviceOptions
    @OptionGroup var load: LoadOptions

    func validate() throws {
        guard maxBatch >= 1 else { throw ValidationError("--max-batch must be at least 1, got \(maxBatch)") }
        guard maxLoras >= 1 else { throw ValidationError("--max-loras must be at least 1, got \(maxLoras)") }
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0...65535, got \(port)") }
        var names = Set<String>()
        for spec in adapter {
            let (name, _) = try Self.namedAdapter(spec)
            guard names.insert(name).inserted else { throw ValidationError("--adapter: two adapters are named '\(name)'") }
            guard name != baseName else { throw ValidationError("--adapter: '\(name)' is the base model's served name") }
        }
        guard adapter.count <= maxLoras else {
            throw ValidationError("--adapter: \(adapter.count) adapters exceed --max-loras \(maxLoras)")
        }
    }

    var baseName: String { servedModelName ?? URL(fileURLWithPath: model).standardizedFileURL.lastPathComponent }

    /// `--adapter NAME=DIR`.
    static func namedAdapter(_ spec: String) throws -> (name: String, folder: String) {
        guard let equals = spec.firstIndex(of: "="), equals != spec.startIndex, spec.index(after: equals) != spec.endIndex else {
            throw ValidationError("--adapter takes NAME=DIR, got '\(spec)'")
        }
        return (String(spec[..<equals]), String(spec[spec.index(after: equals)...]))
    }

    func run() async throws {
        let backend = try device.select(announce: false)
        let lm = try ModelRegistry.standard.load(folder: model, backend: backend, options: load.options())
        lm.maxAdapters = maxLoras
        for spec in adapter {
            let (name, folder) = try Self.namedAdapter(spec)
            do { try lm.loadAdapter(name: name, folder: folder) } catch {
                throw ValidationError("--adapter \(name)=\(folder): \(error)")
            }
        }
        let tokenizer = try loadTokenizer(folder: model)
        let names = ([baseName] + lm.adapterNames).joined(separator: ", ")
        let engine = try Engine(model: lm, tokenizer: tokenizer, servedName: baseName, modelPath: model, maxBatch: maxBatch)
        var logger = Logger(label: "lora-serve")
        logger.logLevel = .notice
        let server = OpenAIServer(engine: engine, host: host, port: port, logger: logger)
        let running = try await server.start(signals: [.sigterm, .sigint])
        // Written at once (not buffered): whoever started the server waits for this line to learn the port.
        FileHandle.standardOutput.write(Data("lora-serve: listening on http://\(host):\(running.port) (models: \(names); max batch \(maxBatch), max loras \(maxLoras))\n".utf8))
        try await running.wait()
        FileHandle.standardOutput.write(Data("lora-serve: stopped\n".utf8))
    }
}
