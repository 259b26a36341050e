"""The PyTorch + PEFT side of `lora bench train`: tokens/s and peak RSS of LoRA training steps (forward, backward,
AdamW) on a random-weight GPT-2, r=8, alpha=16 on attn.c_attn and attn.c_proj, fp32 on the CPU.

    venv/bin/python Benchmarks/pytorch_train_bench.py --config gpt2-small --threads 2   # batch 4 x seq 128
    venv/bin/python Benchmarks/pytorch_train_bench.py --config tiny --threads 2         # batch 16 x seq 128
"""
import argparse, json, resource, statistics, time
import torch
from transformers import GPT2Config, GPT2LMHeadModel
from peft import LoraConfig, get_peft_model

CONFIGS = {"gpt2-small": dict(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12, batch=4),
           "tiny": dict(vocab_size=256, n_positions=128, n_embd=128, n_layer=2, n_head=4, batch=16)}

parser = argparse.ArgumentParser()
parser.add_argument("--config", default="tiny", choices=CONFIGS)
parser.add_argument("--batch", type=int)
parser.add_argument("--seq", type=int, default=128)
parser.add_argument("--steps", type=int, default=10)
parser.add_argument("--threads", type=int, default=2)
args = parser.parse_args()
torch.set_num_threads(args.threads)
torch.manual_seed(0)
c = dict(CONFIGS[args.config])
batch = args.batch or c.pop("batch")
c.pop("batch", None)
model = GPT2LMHeadModel(GPT2Config(**c, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0))
model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["attn.c_attn", "attn.c_proj"],
                                         lora_dropout=0.0, fan_in_fan_out=True, task_type="CAUSAL_LM"))
model.train()
optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, weight_decay=0.01)
tokens = torch.randint(0, c["vocab_size"], (batch, args.seq))
speeds = []
for step in range(args.steps + 2):
    start = time.perf_counter()
    optimizer.zero_grad()
    loss = model(tokens, labels=tokens).loss
    loss.backward()
    optimizer.step()
    elapsed = time.perf_counter() - start
    if step >= 2:
        speeds.append(batch * args.seq / elapsed)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"config": args.config, "device": "pytorch-cpu", "batch": batch, "seq": args.seq,
                  "threads": args.threads, "tokens_per_s": round(statistics.median(speeds), 1), "peak_rss_mb": round(peak)}))
