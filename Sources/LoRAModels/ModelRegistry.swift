// Which model a folder holds: config.json's `model_type` picks a family, and the family loads it. Every command
// asks the registry for its model, so a new architecture is one more `ModelFamily`, not an edit to each command.
import Foundation
import LoRAFormats
import LoRARuntime

/// How weights are stored on the device when a model is loaded.
public struct ModelLoadOptions: Sendable {
    /// The storage dtype of the weights (the unquantized ones, with `quantization`); nil keeps the file's.
    public var dtype: DType?
    /// Quantizes the decoder's linear layers to NF4 as they load (QLoRA); nil keeps them as the file has them (a
    /// bitsandbytes 4-bit folder loads 4-bit either way).
    public var quantization: NF4Options?
    public init(dtype: DType? = nil, quantization: NF4Options? = nil) { (self.dtype, self.quantization) = (dtype, quantization) }
}

/// An architecture family: the `model_type`s it reads and how it builds a model.
public protocol ModelFamily {
    /// config.json `model_type` values this family loads.
    static var modelTypes: [String] { get }
    /// Loads a Hugging Face folder (config.json and the weights) onto `backend`.
    static func load(folder: String, backend: any Backend, options: ModelLoadOptions) throws -> any LanguageModel
    /// A model of the folder's config.json with random weights (training from scratch), initialized as transformers does.
    static func random(folder: String, seed: UInt64, backend: any Backend) throws -> any LanguageModel
}

/// The families a program knows, by `model_type`.
public struct ModelRegistry {
    public private(set) var families: [String: any ModelFamily.Type] = [:]

    public init(_ families: [any ModelFamily.Type]) { for family in families { register(family) } }

    /// Adds a family (a later one wins for a `model_type` both read).
    public mutating func register(_ family: any ModelFamily.Type) { for type in family.modelTypes { families[type] = family } }

    /// The family for `folder/config.json`'s `model_type`.
    public func family(folder: String) throws -> any ModelFamily.Type {
        let path = folder + "/config.json"
        let root = try JSONValue.readObject(path: path, hint: " (is \(folder) a Hugging Face model folder?)")
        guard let type = root["model_type"]?.stringValue else {
            throw FormatError.invalid(path: path, reason: "model_type is missing or not a string")
        }
        guard let family = families[type] else {
            throw FormatError.unsupported(path: path, reason: "model_type '\(type)' (supported: \(families.keys.sorted().joined(separator: ", ")))")
        }
        return family
    }

    /// Loads the model in `folder`.
    public func load(folder: String, backend: any Backend, options: ModelLoadOptions = ModelLoadOptions()) throws -> any LanguageModel {
        try family(folder: folder).load(folder: folder, backend: backend, options: options)
    }

    /// A model of `folder/config.json` with random weights.
    public func random(folder: String, seed: UInt64, backend: any Backend) throws -> any LanguageModel {
        try family(folder: folder).random(folder: folder, seed: seed, backend: backend)
    }
}
