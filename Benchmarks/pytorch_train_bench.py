"""The PyTorch + PEFT side of `lora bench train`: tokens/s and peak RSS of LoRA training steps (forward, backward,
AdamW) on a random-weight model, r=8, alpha=16, fp32 on the CPU. GPT-2 configs put LoRA on attn.c_attn and
attn.c_proj; Llama configs (smollm-135m: SmolLM2-135M's shape; tiny-llama) on q_proj, k_proj, v_proj and o_proj.

    venv/bin/python Benchmarks/pytorch_train_bench.py --config gpt2-small --threads 2    # batch 4 x seq 128
    venv/bin/python Benchmarks/pytorch_train_bench.py --config tiny --threads 2          # batch 16 x seq 128
    venv/bin/python Benchmarks/pytorch_train_bench.py --config smollm-135m --threads 2   # batch 4 x seq 128
    venv/bin/python Benchmarks/pytorch_train_bench.py --config tiny-llama --threads 2    # batch 16 x seq 128

QLoRA mode (`--quantize nf4`): the user's flow, `from_pretrained(folder, quantization_config=BitsAndBytesConfig(
load_in_4bit, nf4, double quantization, float32 compute))` on a random-weight checkpoint (written once under
/tmp/swift-lora-bench by a child process, so its float32 copy never counts toward this process's peak RSS),
quantized tensor by tensor at load, then PEFT LoRA as above. bitsandbytes runs its default CPU path.

    venv/bin/python Benchmarks/pytorch_train_bench.py --config smollm-135m --quantize nf4 --threads 2
"""
import argparse, json, os, resource, statistics, subprocess, sys, time
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM
from peft import LoraConfig, get_peft_model

GPT2 = {"gpt2-small": dict(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12, batch=4),
        "tiny": dict(vocab_size=256, n_positions=128, n_embd=128, n_layer=2, n_head=4, batch=16)}
LLAMA = {"smollm-135m": dict(vocab_size=49152, hidden_size=576, num_hidden_layers=30, num_attention_heads=9,
                             num_key_value_heads=3, intermediate_size=1536, tie_word_embeddings=True,
                             rope_parameters={"rope_type": "default", "rope_theta": 100000.0},
                             max_position_embeddings=2048, rms_norm_eps=1e-5, batch=4),
         "tiny-llama": dict(vocab_size=256, hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                            num_key_value_heads=2, intermediate_size=352, tie_word_embeddings=False,
                            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
                            max_position_embeddings=128, rms_norm_eps=1e-5, batch=16)}
CONFIGS = {**GPT2, **LLAMA}

parser = argparse.ArgumentParser()
parser.add_argument("--config", default="tiny", choices=CONFIGS)
parser.add_argument("--batch", type=int)
parser.add_argument("--seq", type=int, default=128)
parser.add_argument("--steps", type=int, default=10)
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--quantize", choices=["nf4"], help="QLoRA: the base loaded 4-bit by bitsandbytes")
parser.add_argument("--write-checkpoint", metavar="DIR", help=argparse.SUPPRESS)  # the child that writes the random model
args = parser.parse_args()
torch.set_num_threads(args.threads)
torch.manual_seed(0)
c = dict(CONFIGS[args.config])
batch = args.batch or c.pop("batch")
c.pop("batch", None)
if args.config in GPT2:
    model_class, config = GPT2LMHeadModel, GPT2Config(**c, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    # PEFT sets fan_in_fan_out itself for a 4-bit Conv1D replacement (a Linear4bit); for Conv1D it must be told.
    lora = LoraConfig(r=8, lora_alpha=16, target_modules=["attn.c_attn", "attn.c_proj"], lora_dropout=0.0,
                      fan_in_fan_out=not args.quantize, task_type="CAUSAL_LM")
else:
    model_class, config = LlamaForCausalLM, LlamaConfig(**c, attention_dropout=0.0)
    lora = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], lora_dropout=0.0,
                      task_type="CAUSAL_LM")
if args.write_checkpoint:
    model_class(config).save_pretrained(args.write_checkpoint)
    sys.exit(0)
if args.quantize:
    from transformers import BitsAndBytesConfig
    folder = f"/tmp/swift-lora-bench/{args.config}-seed0"
    if not os.path.exists(os.path.join(folder, "config.json")):
        subprocess.run([sys.executable, __file__, "--config", args.config, "--write-checkpoint", folder], check=True)
    quantization = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                      bnb_4bit_compute_dtype=torch.float32)
    model = model_class.from_pretrained(folder, quantization_config=quantization, dtype=torch.float32, device_map="cpu")
else:
    model = model_class(config)
model = get_peft_model(model, lora)
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
print(json.dumps({"config": args.config, "device": "pytorch-cpu", "quantize": args.quantize, "batch": batch, "seq": args.seq,
                  "threads": args.threads, "tokens_per_s": round(statistics.median(speeds), 1), "peak_rss_mb": round(peak)}))
