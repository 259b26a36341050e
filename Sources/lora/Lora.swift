import ArgumentParser
import SwiftLoRA

@main
struct Lora: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "lora", abstract: "swift-lora", subcommands: [])
    func run() throws { print(try Devices.select().reason) }
}
