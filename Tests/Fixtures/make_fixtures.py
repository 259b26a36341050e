"""Writes the GPT-2 / PEFT reference fixtures the Swift tests compare against (CI needs no PyTorch).

    python3 -m venv venv && venv/bin/pip install torch transformers peft
    venv/bin/python Tests/Fixtures/make_fixtures.py            # rewrites Tests/Fixtures/gpt2-tiny/... and then
                                                               # the Llama family (make_llama_fixtures.py)
    venv/bin/python Tests/Fixtures/make_fixtures.py --check DIR # loads an adapter folder swift-lora wrote in PEFT

Everything is built from a config with random weights (nothing is downloaded): a byte-level BPE tokenizer trained
on a few lines of text, a tiny GPT-2 with that vocabulary, a PEFT LoRA adapter with non-zero B, a fixed batch,
and what PyTorch + PEFT compute for them.
"""
import argparse, json, os, sys
import torch
from safetensors.torch import save_file, load_file

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "gpt2-tiny")
TEXT = [
    "The quick brown fox jumps over the lazy dog. It's 2026, and we'll train adapters!",
    "LoRA freezes the pretrained weights and learns a low-rank update: W + B·A.",
    "    indented code: for i in range(10): print(i)\n\ttabs\r\nand CRLF",
    "Ünïcödé — émoji 🦊🚀, CJK 漢字かな, Arabic مرحبا, numbers 3.14159 and 1,000,000.",
]
TOKENIZER_CASES = TEXT + [
    "", " ", "  ", "hello", " hello", "Hello world", "don't I'll they're we've you'd she's",
    "a\n\nb", "x  y   z", "🦊", "\u00e9", "e\u0301", "tab\tend", "trailing space ", "1234567890", "___---+++",
    "\u200b zero width", "mixed123abc", "UPPER lower MiXeD", "?!.,;:", "\U0001F600\U0001F601",
]


def make_tokenizer():
    from tokenizers import ByteLevelBPETokenizer
    tok = ByteLevelBPETokenizer()
    tok.train_from_iterator(TEXT * 4, vocab_size=400, min_frequency=2, special_tokens=["<|endoftext|>"])
    tok.save_model(OUT)
    from transformers import GPT2Tokenizer
    return GPT2Tokenizer(os.path.join(OUT, "vocab.json"), os.path.join(OUT, "merges.txt"))


def make_model(vocab):
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=vocab, n_positions=32, n_embd=32, n_layer=2, n_head=4, n_inner=None,
                        activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                        bos_token_id=vocab - 1, eos_token_id=vocab - 1)
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # random layer norms and biases too, so every parameter is exercised
        for name, p in model.named_parameters():
            if "ln" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
            else:
                p.mul_(5.0)  # GPT-2's 0.02 init gives near-uniform logits; larger weights give a sharper test
    model.save_pretrained(OUT, safe_serialization=True)
    return model


def lora_config():
    from peft import LoraConfig
    return LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn", "c_proj"], lora_dropout=0.0, bias="none",
                      fan_in_fan_out=True, task_type="CAUSAL_LM")


def main():
    os.makedirs(OUT, exist_ok=True)
    tokenizer = make_tokenizer()
    vocab = len(tokenizer.get_vocab())
    model = make_model(vocab)
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, vocab, (2, 9), generator=g)
    with torch.no_grad():
        base_logits = model(tokens).logits

    full_grads = full_gradients(model, tokens)

    from peft import get_peft_model, PeftModel
    peft_model = get_peft_model(model, lora_config())
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
    peft_model.eval()
    adapter_dir = os.path.join(OUT, "adapter")
    peft_model.save_pretrained(adapter_dir, safe_serialization=True)
    os.remove(os.path.join(adapter_dir, "README.md"))  # PEFT's model-card template
    config_path = os.path.join(adapter_dir, "adapter_config.json")  # PEFT keeps targets in a set: fix the order
    with open(config_path) as f:
        adapter_config = json.load(f)
    adapter_config["target_modules"] = sorted(adapter_config["target_modules"])
    with open(config_path, "w") as f:
        json.dump(adapter_config, f, indent=2, sort_keys=True)

    out = peft_model(tokens, labels=tokens)
    out.loss.backward()
    grads = {name.replace(".default", "") + ".grad": p.grad.detach().clone()
             for name, p in peft_model.named_parameters() if p.requires_grad}
    with torch.no_grad():
        merged = peft_model.merge_and_unload()
        merged_logits = merged(tokens).logits
    merged.save_pretrained(os.path.join(OUT, "merged"), safe_serialization=True)

    train_losses, trained = train_steps(adapter_dir, tokens)

    tensors = {"tokens": tokens.to(torch.int64), "base_logits": base_logits.reshape(-1, vocab),
               "lora_logits": out.logits.detach().reshape(-1, vocab), "loss": out.loss.detach().reshape(1),
               "merged_logits": merged_logits.reshape(-1, vocab)}
    tensors.update(grads)
    tensors["train_losses"] = train_losses
    tensors.update(full_grads)
    tensors.update(trained)
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(OUT, "expected.safetensors"))

    cases = [{"text": t, "ids": tokenizer.encode(t)} for t in TOKENIZER_CASES]
    with open(os.path.join(OUT, "tokenizer_cases.json"), "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False, indent=1)
    with open(os.path.join(OUT, "tokens.json"), "w") as f:
        json.dump(tokens.tolist(), f)
    print(f"wrote {OUT}: vocab {vocab}, loss {out.loss.item():.6f}, {len(grads)} LoRA gradients, "
          f"{len(cases)} tokenizer cases")
    sys.dont_write_bytecode = True  # no __pycache__ in the fixtures folder
    import make_llama_fixtures  # and the Llama-family fixtures (llama-tiny, qwen2-tiny, ...), from their script
    make_llama_fixtures.main()


def full_gradients(model, tokens):
    """Every weight's gradient of the plain model's loss (full fine-tuning; wte's includes the tied LM head's)."""
    model.zero_grad()
    model(tokens, labels=tokens).loss.backward()
    grads = {"full." + name + ".grad": p.grad.detach().clone() for name, p in model.named_parameters()}
    model.zero_grad()
    return grads


def train_steps(adapter_dir, tokens, steps=10):
    """10 AdamW steps (lr 1e-3, weight decay 0.01, constant schedule, no clipping) from the saved adapter on the
    fixed batch: the loss of each step's forward (before its update) and the adapter after the last step."""
    from transformers import GPT2LMHeadModel
    from peft import PeftModel
    model = PeftModel.from_pretrained(GPT2LMHeadModel.from_pretrained(OUT), adapter_dir, is_trainable=True)
    return adamw_steps(model, tokens, lr=1e-3, steps=steps)


def adamw_steps(model, tokens, lr, steps):
    """`steps` AdamW updates (betas 0.9/0.999, eps 1e-8, weight decay 0.01) of a PEFT model's trainable adapter on
    one fixed batch: each step's loss (before its update) and the adapter tensors after the last, as `trained.<key>`.
    make_llama_fixtures.py uses it too."""
    model.train()  # lora_dropout is 0: train mode changes nothing but is what a trainer runs
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = model(tokens, labels=tokens).loss
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    trained = {"trained." + name.replace(".default", ""): p.detach().clone()
               for name, p in model.named_parameters() if p.requires_grad}
    return torch.tensor(losses, dtype=torch.float32), trained


def check(folder):
    """Loads a folder swift-lora wrote and compares logits. An adapter folder (adapter_config.json) goes into PEFT
    on the fixture model and is compared with the logits swift-lora saved next to it (expected_logits.safetensors);
    a model folder (`lora merge` output of the fixture adapter) goes into transformers and is compared with
    PEFT's merge_and_unload logits."""
    from transformers import GPT2LMHeadModel
    expected = load_file(os.path.join(OUT, "expected.safetensors"))
    if os.path.exists(os.path.join(folder, "adapter_config.json")):
        from peft import PeftModel
        model = PeftModel.from_pretrained(GPT2LMHeadModel.from_pretrained(OUT).eval(), folder).eval()
        saved = load_file(os.path.join(folder, "expected_logits.safetensors"))
        tokens, reference, what = saved["tokens"], saved["logits"], "PEFT"
    else:
        model = GPT2LMHeadModel.from_pretrained(folder).eval()
        tokens, reference, what = expected["tokens"], expected["merged_logits"], "transformers"
    with torch.no_grad():
        logits = model(tokens).logits.reshape(reference.shape)
    gap = ((logits - reference).abs().max() / reference.abs().max()).item()
    print(f"{what} loaded {folder}: max relative logit gap {gap:.3g}")
    sys.exit(0 if gap < 1e-5 else 1)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", metavar="DIR")
    args = parser.parse_args()
    check(args.check) if args.check else main()
