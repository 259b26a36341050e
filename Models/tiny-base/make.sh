#!/usr/bin/env bash
# Rebuilds Models/tiny-base, the small base model `lora train`'s built-in demo adapts: a byte-level GPT-2
# (vocab 257: 256 bytes + <|endoftext|>, no merges; 2 layers, 4 heads, 64 wide, 16 positions) trained from
# random weights by this project's own `lora train --full` on a copy task: lines "abcd=abcd". It never sees the
# demo's task (reversal, "abcd>dcba"). Usage: Models/tiny-base/make.sh (from the repository root).
set -euo pipefail
cd "$(dirname "$0")"
work=$(mktemp -d)
python3 - "$work" <<'PY'
import json, random, sys
work = sys.argv[1]
# GPT-2's bytes_to_unicode: printable bytes stand for themselves, the rest map to 256 + n.
printable = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
symbols, extra = {}, 0
for b in range(256):
    if b in printable:
        symbols[b] = chr(b)
    else:
        symbols[b] = chr(256 + extra)
        extra += 1
vocab = {symbols[b]: b for b in range(256)}
vocab["<|endoftext|>"] = 256
json.dump(vocab, open(f"{work}/vocab.json", "w"), ensure_ascii=False)
open(f"{work}/merges.txt", "w").write("#version: 0.2\n")
json.dump({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "vocab_size": 257, "n_positions": 16,
           "n_embd": 64, "n_layer": 2, "n_head": 4, "n_inner": 256, "activation_function": "gelu_new",
           "layer_norm_epsilon": 1e-5, "scale_attn_weights": True, "tie_word_embeddings": True,
           "bos_token_id": 256, "eos_token_id": 256}, open(f"{work}/config.json", "w"), indent=2)
rng = random.Random(2026)
letters = "abcdefghijklmnopqrstuvwxyz"
with open(f"{work}/copy.txt", "w") as f:
    for _ in range(20000):
        w = "".join(rng.choice(letters) for _ in range(4))
        f.write(f"{w}={w}\n")
PY
cp "$work/vocab.json" "$work/merges.txt" .
# Lines are 10 tokens: --seq 9 makes every window one line.
swift run -c release lora train --full --model "$work" --data "$work/copy.txt" --seq 9 --batch 32 \
    --steps 1500 --lr 3e-3 --lr-schedule cosine --warmup 50 --seed 1 --out "$work/out" --json
cp "$work/out/config.json" "$work/out/model.safetensors" .
rm -rf "$work"
