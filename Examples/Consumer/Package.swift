// swift-tools-version: 6.0
// A downstream package that uses swift-lora as a backend, depending on it by version as any consumer would.
// SWIFT_LORA_GIT points at the repository to resolve (run.sh sets it to a tagged local clone).
import PackageDescription

let swiftLoRA = Context.environment["SWIFT_LORA_GIT"] ?? "https://github.com/swift-lora/swift-lora.git"

let package = Package(
    name: "Consumer",
    dependencies: [
        .package(url: swiftLoRA, from: "0.1.0"),
    ],
    targets: [
        .executableTarget(name: "Consumer", dependencies: [.product(name: "SwiftLoRA", package: "swift-lora")]),
    ],
    swiftLanguageModes: [.v6]
)
