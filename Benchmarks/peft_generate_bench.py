"""The PEFT side of `lora bench generate`: tokens/s of greedy generation with many LoRA adapters in one batch
(PEFT's mixed-adapter batches: `generate(..., adapter_names=[one per row])`), KV cache on, float32 on the CPU.

A random-weight transformers model of the config (the same shapes as `lora bench generate --config`), N adapters
added to one PeftModel with `add_adapter` (rank and alpha as ours vary them: slot a has rank R*[1, 1/2, 1, 2][a % 4],
alpha 2*rank on even slots and rank on odd ones; q/k/v/o_proj), A and B uniform random and nonzero so they change
the outputs. --batch prompts of random ids (one length, so no padding); row b uses adapter b % N. Exactly
--new-tokens generated per row (min_new_tokens = max_new_tokens, greedy). Only generated tokens are counted, the
batched prefill included. With --merged, each round also times the same batch on a copy of the base with adapter 0
merged (merge_and_unload), PEFT's own mixed/merged ratio.

    venv/bin/python Benchmarks/peft_generate_bench.py --config tiny-llama --threads 2
    venv/bin/python Benchmarks/peft_generate_bench.py --config smollm-135m --threads 2 --rounds 3

OpenBLAS tuning variables meant for our `lora bench` peer (OPENBLAS_CORETYPE, OPENBLAS_L2_SIZE) are removed before
torch loads so that PyTorch picks its own best kernels; the JSON names any that were removed.
"""
import os

UNSET = [name for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if os.environ.pop(name, None) is not None]

import argparse, copy, json, statistics, time
import torch
from transformers import LlamaConfig, LlamaForCausalLM
from peft import LoraConfig, get_peft_model

LLAMA = {"smollm-135m": dict(vocab_size=49152, hidden_size=576, num_hidden_layers=30, num_attention_heads=9,
                             num_key_value_heads=3, intermediate_size=1536, tie_word_embeddings=True,
                             rope_parameters={"rope_type": "default", "rope_theta": 100000.0},
                             max_position_embeddings=2048, rms_norm_eps=1e-5),
         "tiny-llama": dict(vocab_size=256, hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                            num_key_value_heads=2, intermediate_size=352, tie_word_embeddings=False,
                            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
                            max_position_embeddings=128, rms_norm_eps=1e-5)}

parser = argparse.ArgumentParser()
parser.add_argument("--config", default="tiny-llama", choices=LLAMA)
parser.add_argument("--adapters", type=int, default=8)
parser.add_argument("--batch", type=int, default=16)
parser.add_argument("--new-tokens", type=int, default=32)
parser.add_argument("--prompt-tokens", type=int, default=16)
parser.add_argument("--rank", type=int, default=8)
parser.add_argument("--rounds", type=int, default=5, help="timed rounds after one warm-up")
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--merged", action="store_true", help="also time adapter 0 merged into the base, alternating")
args = parser.parse_args()
torch.set_num_threads(args.threads)
torch.manual_seed(0)

config = LlamaConfig(**LLAMA[args.config], attention_dropout=0.0)
base = LlamaForCausalLM(config).eval()
merged_base = copy.deepcopy(base) if args.merged else None


def rank_and_alpha(slot):
    rank = max(1, [args.rank, args.rank // 2, args.rank, 2 * args.rank][slot % 4])
    return rank, 2 * rank if slot % 2 == 0 else rank


def randomize(model, name, seed):
    """A uniform in +-1/sqrt(in), B in +-0.02: nonzero, as `lora bench generate` writes them."""
    g = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if hasattr(module, "lora_A") and name in module.lora_A:
            a, b = module.lora_A[name].weight, module.lora_B[name].weight
            with torch.no_grad():
                a.copy_((torch.rand(a.shape, generator=g) * 2 - 1) / a.shape[1] ** 0.5)
                b.copy_((torch.rand(b.shape, generator=g) * 2 - 1) * 0.02)


def lora(slot):
    rank, alpha = rank_and_alpha(slot)
    return LoraConfig(r=rank, lora_alpha=alpha, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                      lora_dropout=0.0, task_type="CAUSAL_LM")


names = [f"adapter{a}" for a in range(args.adapters)]
model = get_peft_model(base, lora(0), adapter_name=names[0])
for slot, name in enumerate(names):
    if slot > 0:
        model.add_adapter(name, lora(slot))
    randomize(model, name, 100 + slot)
model.eval()
merged = None
if args.merged:
    merged = get_peft_model(merged_base, lora(0), adapter_name=names[0])
    randomize(merged, names[0], 100)
    merged = merged.merge_and_unload().eval()

input_ids = torch.randint(0, config.vocab_size, (args.batch, args.prompt_tokens), generator=torch.Generator().manual_seed(7))
attention_mask = torch.ones_like(input_ids)
row_adapters = [names[b % args.adapters] for b in range(args.batch)]
settings = dict(attention_mask=attention_mask, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                do_sample=False, use_cache=True, pad_token_id=0)


def timed(mixed):
    start = time.perf_counter()
    with torch.inference_mode():
        if mixed:
            out = model.generate(input_ids=input_ids, adapter_names=row_adapters, **settings)
        else:
            out = merged.generate(input_ids=input_ids, **settings)
    elapsed = time.perf_counter() - start
    assert out.shape == (args.batch, args.prompt_tokens + args.new_tokens), out.shape
    return elapsed


timed(True)
if args.merged:
    timed(False)
mixed_s, merged_s = [], []
for _ in range(args.rounds):
    mixed_s.append(timed(True))
    if args.merged:
        merged_s.append(timed(False))
generated = args.batch * args.new_tokens
result = {"config": args.config, "device": "pytorch-cpu", "threads": args.threads, "adapters": args.adapters,
          "ranks": [rank_and_alpha(a)[0] for a in range(args.adapters)], "batch": args.batch,
          "prompt_tokens": args.prompt_tokens, "new_tokens": args.new_tokens, "rounds": args.rounds,
          "prefill_included": True, "mixed_tokens_per_s": round(generated / statistics.median(mixed_s), 1),
          "mixed_seconds": [round(s, 4) for s in mixed_s], "unset_env": UNSET,
          "torch": torch.__version__, "peft": __import__("peft").__version__}
if args.merged:
    result["merged_tokens_per_s"] = round(generated / statistics.median(merged_s), 1)
    result["mixed_over_merged"] = round(result["mixed_tokens_per_s"] / result["merged_tokens_per_s"], 3)
print(json.dumps(result))
