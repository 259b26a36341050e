// Between safetensors checkpoints and device tensors, for every model family: weights go up in the file's dtype
// (a bf16 checkpoint stays bf16 on the device) or in the dtype a load asks for, converted on the host on the way;
// saving streams each tensor's bytes from the device into (sharded) files, never holding a second copy of the model.
import LoRAFormats
import LoRARuntime

extension DType {
    /// The safetensors dtype of this storage, for weights (float types) and ids.
    public var safeTensors: SafeTensorsDType {
        switch self {
        case .float32: .f32
        case .bfloat16: .bf16
        case .float16: .f16
        case .int32: .i32
        case .uint8: .u8
        }
    }

    /// The storage for a safetensors dtype a weight may have (nil: not a weight dtype this runtime stores).
    public init?(safeTensors dtype: SafeTensorsDType) {
        switch dtype {
        case .f32: self = .float32
        case .bf16: self = .bfloat16
        case .f16: self = .float16
        case .i32: self = .int32
        case .u8: self = .uint8
        default: return nil
        }
    }
}

extension SafeTensorsCheckpoint {
    /// Uploads float tensor `name` to `backend`, stored as `dtype` (nil: the file's; F64 becomes float32).
    public func upload(_ name: String, to backend: any Backend, dtype: DType? = nil) throws -> Tensor {
        let entry = try entry(name)
        let stored = DType(safeTensors: entry.dtype)
        let target = dtype ?? stored ?? .float32
        if stored == target { return try withBytes(name) { try backend.upload(bytes: $0, dtype: target, shape: entry.shape) } }
        // A conversion: through float32 on the host.
        let values = try floats(name)
        switch target {
        case .float32: return try backend.upload(values, shape: entry.shape)
        case .bfloat16, .float16:
            var bits = [UInt16](repeating: 0, count: values.count)
            values.withUnsafeBytes { source in
                bits.withUnsafeMutableBytes { target == .bfloat16 ? convertFloat32ToBFloat16(source, $0) : convertFloat32ToFloat16(source, $0) }
            }
            return try bits.withUnsafeBytes { try backend.upload(bytes: $0, dtype: target, shape: entry.shape) }
        case .int32, .uint8:
            throw LoRAError.invalidArgument("\(name): a weight cannot be stored as \(target)")
        }
    }
}

/// Writes `tensors` (any dtypes, on any device) and `items` (tensors already in file form, e.g. 4-bit weights) as a
/// Hugging Face checkpoint in `folder`: `model.safetensors`, or shards of at most `maxShardBytes` with
/// `model.safetensors.index.json`, each file through a temporary name. Names are sorted as `save_pretrained` sorts
/// them, so the shards come out the same.
public func writeCheckpoint(_ tensors: [(name: String, tensor: Tensor)], items: [SafeTensorsWriter.Item] = [], folder: String,
                            maxShardBytes: Int = 5_000_000_000) throws {
    let streamed = tensors.map { name, tensor in
        SafeTensorsWriter.Item(name: name, dtype: tensor.dtype.safeTensors, shape: tensor.shape) { emit in
            let bytes = try tensor.backend.downloadBytes(tensor)
            try bytes.withUnsafeBytes { try emit($0) }
        }
    }
    _ = try SafeTensorsWriter.writeCheckpoint((streamed + items).sorted { $0.name < $1.name }, to: folder, maxShardBytes: maxShardBytes)
}
