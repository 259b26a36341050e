"""`lora bench train` against PyTorch + PEFT, alternating, on a shared (noisy) machine: each round runs ours, then
PyTorch's (Benchmarks/pytorch_train_bench.py), each a fresh process, and the rounds' ratios are reported with
their median. Alternating keeps a slow phase of the machine from landing on one side only.

    venv/bin/python Benchmarks/compare_train.py --config tiny --rounds 5
    venv/bin/python Benchmarks/compare_train.py --config gpt2-small --rounds 3 --steps 5
    venv/bin/python Benchmarks/compare_train.py --config smollm-135m --rounds 3 --steps 5   # Llama configs too
"""
import argparse, json, os, statistics, subprocess, sys

here = os.path.dirname(os.path.abspath(__file__))
parser = argparse.ArgumentParser()
parser.add_argument("--config", default="tiny", choices=["tiny", "gpt2-small", "tiny-llama", "smollm-135m"])
parser.add_argument("--rounds", type=int, default=5)
parser.add_argument("--steps", type=int, default=10, help="timed steps per run (after 2 warm-up steps)")
parser.add_argument("--lora", default=os.path.join(here, "..", ".build", "release", "lora"))
args = parser.parse_args()


def run(command):
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


ours_cmd = [args.lora, "bench", "train", "--config", args.config, "--steps", str(args.steps), "--json"]
torch_cmd = [sys.executable, os.path.join(here, "pytorch_train_bench.py"), "--config", args.config,
             "--steps", str(args.steps), "--threads", "2"]
rows = []
for r in range(args.rounds):
    ours, torch = run(ours_cmd), run(torch_cmd)
    ratio = ours["tokens_per_s"] / torch["tokens_per_s"]
    rows.append((ours, torch, ratio))
    print(f"round {r + 1}: ours {ours['tokens_per_s']:.1f} tokens/s ({ours['peak_rss_mb']} MB), "
          f"PyTorch {torch['tokens_per_s']:.1f} tokens/s ({torch['peak_rss_mb']} MB), ratio {ratio:.2f}", flush=True)
print(json.dumps({
    "config": args.config, "rounds": args.rounds,
    "ours_median_tokens_per_s": round(statistics.median(o["tokens_per_s"] for o, _, _ in rows), 1),
    "pytorch_median_tokens_per_s": round(statistics.median(t["tokens_per_s"] for _, t, _ in rows), 1),
    "median_ratio": round(statistics.median(x for _, _, x in rows), 3),
    "ratios": [round(x, 3) for _, _, x in rows],
    "ours_peak_rss_mb": max(o["peak_rss_mb"] for o, _, _ in rows),
    "pytorch_peak_rss_mb": max(t["peak_rss_mb"] for _, t, _ in rows),
}))
