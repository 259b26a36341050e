// Writing the model (with merged adapters: W' = W + s·(B·A)ᵀ for GPT-2's [in, out] Conv1D weights) as a Hugging
// Face folder that transformers loads.
import LoRARuntime

extension GPT2Model {
    /// Writes the current weights (merged ones included) as config.json + model.safetensors in `folder`.
    public func save(folder: String) throws {
        var tensors: [(name: String, shape: [Int], values: [Float])] = []
        func add(_ name: String, _ t: Tensor) throws { tensors.append((name, t.shape, try t.toArray())) }
        try add("wte.weight", wte)
        try add("wpe.weight", wpe)
        for (i, block) in blocks.enumerated() {
            let p = "h.\(i)."
            try add(p + "ln_1.weight", block.ln1.gamma)
            try add(p + "ln_1.bias", block.ln1.beta)
            try add(p + "ln_2.weight", block.ln2.gamma)
            try add(p + "ln_2.bias", block.ln2.beta)
            for (module, projection) in [("attn.c_attn", block.attention), ("attn.c_proj", block.attentionOut),
                                         ("mlp.c_fc", block.fc), ("mlp.c_proj", block.mlpOut)] {
                try add(p + module + ".weight", projection.dense!.weight)
                try add(p + module + ".bias", projection.dense!.bias!)
            }
        }
        try add("ln_f.weight", lnF.gamma)
        try add("ln_f.bias", lnF.beta)
        if lmHead !== wte { tensors.append(("lm_head.weight", lmHead.shape, try lmHead.toArray())) }
        try GPT2Checkpoint.write(config: config, tensors: tensors, to: folder)
    }
}
