"""`lora bench generate` against PEFT's mixed-adapter batches, alternating, on a shared (noisy) machine: each round
runs ours (`lora bench generate --json`: mixed and merged, alternating inside) and then PEFT's
(Benchmarks/peft_generate_bench.py), each a fresh process, and reports the medians over rounds and the ratios
ours mixed / ours merged (bar: >= 0.85) and ours mixed / PEFT mixed (bar: >= 3).

    venv/bin/python Benchmarks/compare_generate.py --config tiny-llama --rounds 5
    venv/bin/python Benchmarks/compare_generate.py --config smollm-135m --rounds 3 --inner-rounds 1

Both sides use the same thread count (LORA_THREADS for ours, torch.set_num_threads for PEFT's; default: the cores
this process may run on). The PyTorch peer runs in `peer_env.py`'s environment (OpenBLAS presets removed; on AMD
CPUs MKL's AVX-512 kernels enabled unless --mkl-own-dispatch); the output says what was changed.
"""
import argparse, json, os, statistics, subprocess, sys
from peer_env import peer_environment

here = os.path.dirname(os.path.abspath(__file__))
parser = argparse.ArgumentParser()
parser.add_argument("--config", default="tiny-llama", choices=["tiny-llama", "smollm-135m"])
parser.add_argument("--rounds", type=int, default=5)
parser.add_argument("--inner-rounds", type=int, default=3, help="timed rounds inside each process (after a warm-up)")
parser.add_argument("--adapters", type=int, default=8)
parser.add_argument("--batch", type=int, default=16)
parser.add_argument("--new-tokens", type=int, default=32)
parser.add_argument("--prompt-tokens", type=int, default=16)
parser.add_argument("--rank", type=int, default=8)
parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
parser.add_argument("--peft-merged", action="store_true", help="PEFT also times adapter 0 merged (its own ratio)")
parser.add_argument("--lora", default=os.path.join(here, "..", ".build", "release", "lora"))
parser.add_argument("--mkl-own-dispatch", action="store_true",
                    help="keep MKL's vendor dispatch in the peer (AMD CPUs: its AVX2 kernels, the wheel as installed)")
args = parser.parse_args()

shape = ["--adapters", str(args.adapters), "--batch", str(args.batch), "--new-tokens", str(args.new_tokens),
         "--prompt-tokens", str(args.prompt_tokens), "--rank", str(args.rank), "--rounds", str(args.inner_rounds)]
ours_cmd = [args.lora, "bench", "generate", "--config", args.config, "--device", "cpu", "--json"] + shape
peft_cmd = [sys.executable, os.path.join(here, "peft_generate_bench.py"), "--config", args.config,
            "--threads", str(args.threads)] + shape + (["--merged"] if args.peft_merged else [])
ours_env = dict(os.environ, LORA_THREADS=str(args.threads))
peft_env, peer_notes = peer_environment(own_dispatch=args.mkl_own_dispatch)
for line in peer_notes:
    print("note: " + line)


def run(command, env):
    out = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


rounds = []
for r in range(args.rounds):
    ours, peft = run(ours_cmd, ours_env), run(peft_cmd, peft_env)
    rounds.append((ours, peft))
    print(f"round {r + 1}: ours mixed {ours['mixed_tokens_per_s']:.1f} tokens/s, merged {ours['merged_tokens_per_s']:.1f} "
          f"({ours['mixed_over_merged']:.3f}; decode only {ours['decode_mixed_over_merged']:.3f}), PEFT mixed "
          f"{peft['mixed_tokens_per_s']:.1f}" + (f", merged {peft['merged_tokens_per_s']:.1f}" if args.peft_merged else "")
          + f"; ours/PEFT mixed {ours['mixed_tokens_per_s'] / peft['mixed_tokens_per_s']:.2f}", flush=True)


def med(values):
    return round(statistics.median(values), 3)


summary = {
    "config": args.config, "rounds": args.rounds, "inner_rounds": args.inner_rounds, "threads": args.threads,
    "adapters": args.adapters, "batch": args.batch, "prompt_tokens": args.prompt_tokens, "new_tokens": args.new_tokens,
    "prefill_included": True, "peer_env": peer_notes,
    "ours_mixed_tokens_per_s": med(o["mixed_tokens_per_s"] for o, _ in rounds),
    "ours_merged_tokens_per_s": med(o["merged_tokens_per_s"] for o, _ in rounds),
    "peft_mixed_tokens_per_s": med(p["mixed_tokens_per_s"] for _, p in rounds),
    "mixed_over_merged": med(o["mixed_over_merged"] for o, _ in rounds),
    "decode_mixed_over_merged": med(o["decode_mixed_over_merged"] for o, _ in rounds),
    "ours_mixed_over_peft_mixed": med(o["mixed_tokens_per_s"] / p["mixed_tokens_per_s"] for o, p in rounds),
}
if args.peft_merged:
    summary["peft_merged_tokens_per_s"] = med(p["merged_tokens_per_s"] for _, p in rounds)
    summary["peft_mixed_over_merged"] = med(p["mixed_over_merged"] for _, p in rounds)
summary["bars"] = {"mixed_over_merged >= 0.85": summary["mixed_over_merged"] >= 0.85,
                   "ours_mixed_over_peft_mixed >= 3": summary["ours_mixed_over_peft_mixed"] >= 3}
print(json.dumps(summary))
