// Which modules get a LoRA adapter, and how: PEFT's LoraConfig fields and its module-matching rules.

/// LoRA settings, as PEFT's `LoraConfig` holds them.
public struct LoRAConfig: Sendable, Equatable {
    /// PEFT's `target_modules`: a list of names, one string used as a full-match regular expression, or
    /// `"all-linear"` (every linear layer but the output layer).
    public enum Targets: Sendable, Equatable {
        case names([String])
        case pattern(String)
        case allLinear
    }

    public var rank: Int
    public var alpha: Float
    public var targets: Targets
    public var dropout: Float
    public var useRSLoRA: Bool
    /// PEFT's `init_lora_weights`: true (Kaiming-uniform A) or "gaussian".
    public var gaussianInit: Bool

    /// The LoRA paper's choice for GPT-2: the attention matrices, `attn.c_attn` (q, k, v fused) and `attn.c_proj`.
    public static let attentionTargets = Targets.names(["attn.c_attn", "attn.c_proj"])
    /// The same for the Llama family: `q_proj`, `k_proj`, `v_proj`, `o_proj`.
    public static let llamaAttentionTargets = Targets.names(["q_proj", "k_proj", "v_proj", "o_proj"])

    public init(rank: Int = 8, alpha: Float = 16, targets: Targets = attentionTargets, dropout: Float = 0,
                useRSLoRA: Bool = false, gaussianInit: Bool = false) {
        (self.rank, self.alpha, self.targets, self.dropout) = (rank, alpha, targets, dropout)
        (self.useRSLoRA, self.gaussianInit) = (useRSLoRA, gaussianInit)
    }

    /// PEFT's rule: a list entry matches a module whose name equals it or ends with "." + it; a string must match
    /// the whole name as a regular expression; `"all-linear"` matches every module a model offers (its output layer
    /// is never among them).
    public func matches(_ module: String) throws -> Bool {
        switch targets {
        case .allLinear: return true
        case .names(let names): return names.contains { module == $0 || module.hasSuffix("." + $0) }
        case .pattern(let pattern):
            let regex: Regex<AnyRegexOutput>
            do { regex = try Regex(pattern) } catch {
                throw LoRAConfigError("target_modules '\(pattern)' is not a regular expression: \(error)")
            }
            return (try? regex.wholeMatch(in: module)) != nil
        }
    }
}

/// A LoRA configuration this project cannot apply, with the reason.
public struct LoRAConfigError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
