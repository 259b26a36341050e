// What an optimizer updates: a named tensor and its gradient, both float32 on the same device.
import LoRARuntime

/// A trainable tensor and its gradient (PEFT's key for adapter tensors, transformers' name for full fine-tuning).
public struct TrainableParameter {
    public let name: String
    public let value: Tensor, gradient: Tensor
    public init(name: String, value: Tensor, gradient: Tensor) { (self.name, self.value, self.gradient) = (name, value, gradient) }
}
