"""`lora bench train` against PyTorch + PEFT, alternating, on a shared (noisy) machine: each round runs ours, then
PyTorch's (Benchmarks/pytorch_train_bench.py), each a fresh process, and the rounds' ratios are reported with
their median. Alternating keeps a slow phase of the machine from landing on one side only.

    venv/bin/python Benchmarks/compare_train.py --config tiny --rounds 5
    venv/bin/python Benchmarks/compare_train.py --config gpt2-small --rounds 3 --steps 5
    venv/bin/python Benchmarks/compare_train.py --config smollm-135m --rounds 3 --steps 5   # Llama configs too
    venv/bin/python Benchmarks/compare_train.py --config smollm-135m --quantize nf4 --rounds 3 --steps 5

With --quantize nf4 (QLoRA) both sides train on a 4-bit base (PyTorch: PEFT + bitsandbytes), and each round also
runs our float32 LoRA run, whose peak RSS the 4-bit run's is compared with.

The PyTorch peer runs in `peer_env.py`'s environment (OpenBLAS presets removed; on AMD CPUs MKL's AVX-512 kernels
enabled unless --mkl-own-dispatch); the output says what was changed.
"""
import argparse, json, os, statistics, subprocess, sys
from peer_env import peer_environment

here = os.path.dirname(os.path.abspath(__file__))
parser = argparse.ArgumentParser()
parser.add_argument("--config", default="tiny", choices=["tiny", "gpt2-small", "tiny-llama", "smollm-135m"])
parser.add_argument("--rounds", type=int, default=5)
parser.add_argument("--steps", type=int, default=10, help="timed steps per run (after 2 warm-up steps)")
parser.add_argument("--lora", default=os.path.join(here, "..", ".build", "release", "lora"))
parser.add_argument("--quantize", choices=["nf4"])
parser.add_argument("--mkl-own-dispatch", action="store_true",
                    help="keep MKL's vendor dispatch in the peer (AMD CPUs: its AVX2 kernels, the wheel as installed)")
args = parser.parse_args()
torch_env, peer_notes = peer_environment(own_dispatch=args.mkl_own_dispatch)
for line in peer_notes:
    print("note: " + line, flush=True)


def run(command, env=None):
    out = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


ours_cmd = [args.lora, "bench", "train", "--config", args.config, "--steps", str(args.steps), "--json"]
torch_cmd = [sys.executable, os.path.join(here, "pytorch_train_bench.py"), "--config", args.config,
             "--steps", str(args.steps), "--threads", "2"]
float_cmd = list(ours_cmd)
if args.quantize:
    ours_cmd += ["--quantize", args.quantize]
    torch_cmd += ["--quantize", args.quantize]
rows, floats = [], []
for r in range(args.rounds):
    ours, torch = run(ours_cmd), run(torch_cmd, torch_env)
    ratio = ours["tokens_per_s"] / torch["tokens_per_s"]
    rows.append((ours, torch, ratio))
    print(f"round {r + 1}: ours {ours['tokens_per_s']:.1f} tokens/s ({ours['peak_rss_mb']} MB), "
          f"PyTorch {torch['tokens_per_s']:.1f} tokens/s ({torch['peak_rss_mb']} MB), ratio {ratio:.2f}", flush=True)
    if args.quantize:
        floats.append(run(float_cmd))
        print(f"         ours in float32: {floats[-1]['tokens_per_s']:.1f} tokens/s ({floats[-1]['peak_rss_mb']} MB)", flush=True)
extra = {}
if args.quantize:
    ours_rss, torch_rss = max(o["peak_rss_mb"] for o, _, _ in rows), max(t["peak_rss_mb"] for _, t, _ in rows)
    float_rss = max(f["peak_rss_mb"] for f in floats)
    extra = {"quantize": args.quantize, "weight_bits_per_param": rows[0][0].get("weight_bits_per_param"),
             "ours_float32_peak_rss_mb": float_rss,
             "rss_ratio_to_pytorch": round(ours_rss / torch_rss, 3), "rss_ratio_to_our_float32": round(ours_rss / float_rss, 3)}
print(json.dumps({
    "config": args.config, "rounds": args.rounds, "peer_env": peer_notes, **extra,
    "ours_median_tokens_per_s": round(statistics.median(o["tokens_per_s"] for o, _, _ in rows), 1),
    "pytorch_median_tokens_per_s": round(statistics.median(t["tokens_per_s"] for _, t, _ in rows), 1),
    "median_ratio": round(statistics.median(x for _, _, x in rows), 3),
    "ratios": [round(x, 3) for _, _, x in rows],
    "ours_peak_rss_mb": max(o["peak_rss_mb"] for o, _, _ in rows),
    "pytorch_peak_rss_mb": max(t["peak_rss_mb"] for _, t, _ in rows),
}))
