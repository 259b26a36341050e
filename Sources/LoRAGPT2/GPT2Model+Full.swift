// Full fine-tuning: every weight trainable (the baseline the LoRA paper compares against, and how this project
// trains its own small base models). Parameters are named as transformers names them.
import LoRAAdapters
import LoRAModels
import LoRANN
import LoRARuntime

extension GPT2Model {
    public var isFullTraining: Bool { fullGradients != nil }

    /// Gives every weight a gradient (float32 weights only: convert a bf16/f16 checkpoint with `--dtype float32`).
    /// Adapters and full fine-tuning do not mix.
    public func enableFullTraining() throws {
        guard loraConfig == nil else { throw LoRAConfigError("full fine-tuning trains the weights themselves; do not add adapters") }
        guard fullGradients == nil else { return }
        // The optimizer and the gradient ops write float32; a 16-bit weight would need a float32 master copy.
        if let typed = namedWeights.first(where: { $0.tensor.dtype != .float32 }) {
            throw LoRAConfigError("full fine-tuning updates the weights in float32, but \(typed.name) is stored as \(typed.tensor.dtype); load with dtype float32")
        }
        func zeros(like t: Tensor) throws -> Tensor { try backend.zeros(t.shape) }
        releasePackedWeights()
        for p in linearModules { try p.enableGradients() }
        fullGradients = FullGradients(
            wte: try zeros(like: wte), wpe: try zeros(like: wpe), lnF: (try zeros(like: lnF.gamma), try zeros(like: lnF.beta)),
            lmHead: lmHead === wte ? nil : try zeros(like: lmHead),
            norms: try blocks.map { b in ((try zeros(like: b.ln1.gamma), try zeros(like: b.ln1.beta)),
                                          (try zeros(like: b.ln2.gamma), try zeros(like: b.ln2.beta))) })
    }

    /// In full fine-tuning, every weight under transformers' name.
    public var fullTrainingParameters: [TrainableParameter] {
        guard let full = fullGradients else { return [] }
        var list = [TrainableParameter(name: "transformer.wte.weight", value: wte, gradient: full.wte),
                    TrainableParameter(name: "transformer.wpe.weight", value: wpe, gradient: full.wpe)]
        for (i, block) in blocks.enumerated() {
            let p = "transformer.h.\(i)."
            for (name, value, gradient) in [("ln_1.weight", block.ln1.gamma, full.norms[i].ln1.gamma), ("ln_1.bias", block.ln1.beta, full.norms[i].ln1.beta),
                                            ("ln_2.weight", block.ln2.gamma, full.norms[i].ln2.gamma), ("ln_2.bias", block.ln2.beta, full.norms[i].ln2.beta)] {
                list.append(TrainableParameter(name: p + name, value: value, gradient: gradient))
            }
            for projection in block.projections {
                let (dense, gradients) = (projection.dense!, projection.gradients!)
                list.append(TrainableParameter(name: projection.name + ".weight", value: dense.weight, gradient: gradients.weight))
                list.append(TrainableParameter(name: projection.name + ".bias", value: dense.bias!, gradient: gradients.bias!))
            }
        }
        list.append(TrainableParameter(name: "transformer.ln_f.weight", value: lnF.gamma, gradient: full.lnF.gamma))
        list.append(TrainableParameter(name: "transformer.ln_f.bias", value: lnF.beta, gradient: full.lnF.beta))
        if let head = full.lmHead { list.append(TrainableParameter(name: "lm_head.weight", value: lmHead, gradient: head)) }
        return list
    }

    /// Every weight tensor under transformers' name (`transformer.` prefix; the LM head, without one, only when
    /// untied), as the model holds it now (merged adapters included).
    public var namedWeights: [(name: String, tensor: Tensor)] {
        var list: [(name: String, tensor: Tensor)] = [("transformer.wte.weight", wte), ("transformer.wpe.weight", wpe)]
        for (i, block) in blocks.enumerated() {
            let p = "transformer.h.\(i)."
            list += [(p + "ln_1.weight", block.ln1.gamma), (p + "ln_1.bias", block.ln1.beta),
                     (p + "ln_2.weight", block.ln2.gamma), (p + "ln_2.bias", block.ln2.beta)]
            for projection in block.projections {
                if let dense = projection.dense { list.append((projection.name + ".weight", dense.weight)) }
                list.append((projection.name + ".bias", projection.base.bias!))
            }
        }
        list += [("transformer.ln_f.weight", lnF.gamma), ("transformer.ln_f.bias", lnF.beta)]
        if lmHead !== wte { list.append(("lm_head.weight", lmHead)) }
        return list
    }

    /// A generous estimate of the bytes one training step on B sequences of T tokens holds at its peak: the
    /// weights (and, in full fine-tuning, their gradients and AdamW moments), the saved activations of every
    /// layer (with gradient checkpointing: every layer's input and one layer's activations), the attention
    /// probabilities, and the logits with their gradient.
    public func trainingStepBytes(batch: Int, length: Int) -> Int {
        let c = config, n = batch * length
        let full = fullGradients == nil ? 0 : 3 * baseParameterCount * DType.float32.size  // gradients, two moments
        let perLayer = n * (8 * c.width + 3 * c.width + 2 * c.inner) + 2 * batch * c.heads * length * length
        let saved = gradientCheckpointing ? c.layers * n * c.width + perLayer : c.layers * perLayer
        let logits = 2 * n * c.vocabSize
        return weightBytes + full + 4 * (saved + logits + 4 * n * c.width)
    }
}
