"""Writes the Llama-family config and RoPE reference fixtures (Tests/Fixtures/llama-rope/) from transformers 5.24.

    venv/bin/python Tests/Fixtures/make_rope_fixtures.py
    LORA_FIXTURE_EXPORT=/tmp/llama-configs swift test --filter exportWrittenConfigsForTransformers
    venv/bin/python Tests/Fixtures/make_rope_fixtures.py --check /tmp/llama-configs

Nothing is downloaded. Two files:
- rope.safetensors: for each RoPE case, transformers' `inv_freq` [d/2], and the cos/sin its rotary embedding's
  forward returns for `positions` (first half of each row, [P, d/2]; the script checks the second half repeats it);
  `positions` [P] int64.
- config_cases.json: config.json variants, each with what transformers makes of it: the sizes, the biases and
  norms the model actually builds (instantiated on the meta device, so the default 4096-wide configs cost
  nothing), per-layer sliding windows, the standardized `rope_parameters`, `inv_freq` and `attention_scaling`.
  The RoPE cases are listed there too (with `rope_case: true`) so the Swift side parses the same config.json.
Both are computed on the CPU; this machine's torch CPU capability is recorded (inv_freq's rounding depends on it).
"""
import json, math, os, sys, tempfile, warnings

import torch
from safetensors.torch import save_file

warnings.filterwarnings("ignore")
import transformers
from transformers import AutoConfig, AutoModelForCausalLM

transformers.logging.set_verbosity_error()
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "llama-rope")
POSITIONS = list(range(40)) + [127, 1000, 4095, 8191, 32767, 65535, 131071]


def tiny(model_type, **extra):
    """A small config: 64 wide, 4 heads, 2 layers, vocab 128."""
    base = dict(model_type=model_type, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, vocab_size=128, max_position_embeddings=4096)
    base.update(extra)
    return base


# RoPE cases: configs whose tables are compared element by element.
ROPE_CASES = {
    "default_llama2": tiny("llama", hidden_size=256, rope_theta=10000.0),                    # head_dim 64
    "smollm2": tiny("llama", hidden_size=576, num_attention_heads=9, num_key_value_heads=3,
                    rope_theta=100000.0, max_position_embeddings=8192),                          # head_dim 64
    "qwen3": tiny("qwen3", hidden_size=256, head_dim=128, rope_theta=1000000.0,
                  max_position_embeddings=40960),
    "default_hd96": tiny("llama", hidden_size=384, rope_theta=500000.0),                     # 48 freqs: pow tail
    "default_hd80": tiny("mistral", hidden_size=320, head_dim=80, rope_theta=1000000.0),     # 40 freqs: pow tail
    "linear": tiny("llama", hidden_size=256, rope_scaling={"type": "linear", "factor": 4.0}),
    "llama3": tiny("llama", hidden_size=512, max_position_embeddings=131072, rope_parameters={
        "rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
        "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}),                 # head_dim 128
    "llama3_odd_bounds": tiny("llama", hidden_size=256, max_position_embeddings=8192, rope_scaling={
        "rope_type": "llama3", "factor": 3.0, "low_freq_factor": 3.0, "high_freq_factor": 7.0,
        "original_max_position_embeddings": 1000}, rope_theta=10000.0),
    "yarn_qwen": tiny("qwen2", hidden_size=512, max_position_embeddings=131072, rope_theta=1000000.0,
                      rope_scaling={"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}),
    "yarn_explicit": tiny("llama", hidden_size=256, max_position_embeddings=16384, rope_parameters={
        "rope_type": "yarn", "rope_theta": 10000.0, "factor": 8.0, "original_max_position_embeddings": 2048,
        "attention_factor": 0.8, "beta_fast": 16, "beta_slow": 2, "truncate": False}),
    "yarn_mscale": tiny("llama", hidden_size=256, max_position_embeddings=163840, rope_parameters={
        "rope_type": "yarn", "rope_theta": 10000.0, "factor": 40.0, "original_max_position_embeddings": 4096,
        "mscale": 1.0, "mscale_all_dim": 0.707, "beta_fast": 32, "beta_slow": 1}),
}

# Config cases: how config.json variants are read (defaults, both rope keys, legacy `type`, tying, biases, windows).
CONFIG_CASES = {
    "llama_all_defaults": {"model_type": "llama"},
    "mistral_all_defaults": {"model_type": "mistral"},
    "qwen2_all_defaults": {"model_type": "qwen2"},
    "qwen3_all_defaults": {"model_type": "qwen3"},
    "llama_tiny": tiny("llama", num_key_value_heads=None, eos_token_id=[2, 5], torch_dtype="bfloat16"),
    "llama_biases_tied": tiny("llama", attention_bias=True, mlp_bias=True, tie_word_embeddings=True,
                              rms_norm_eps=1e-5, pretraining_tp=2, attention_dropout=0.1, pad_token_id=0),
    "mistral_nemo_style": tiny("mistral", head_dim=32, sliding_window=None, attention_bias=True, dtype="bfloat16"),
    "mistral_window": tiny("mistral", sliding_window=16),
    "qwen2_tied": tiny("qwen2", vocab_size=151936, tie_word_embeddings=True, rope_theta=1000000.0,
                       use_sliding_window=False, sliding_window=32768, max_window_layers=21,
                       bos_token_id=151643, eos_token_id=151645),
    "qwen2_sliding": tiny("qwen2", num_hidden_layers=4, use_sliding_window=True, sliding_window=16,
                          max_window_layers=2),
    "qwen3_bias_headdim": tiny("qwen3", head_dim=32, attention_bias=True, tie_word_embeddings=True,
                               rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}),
    "legacy_type_top_theta": tiny("llama", rope_theta=500000.0, rope_scaling={"type": "linear", "factor": 2.0}),
    "rope_type_beats_type": tiny("llama", rope_scaling={"type": "linear", "rope_type": "default", "factor": 2.0}),
    "both_keys_scaling_wins": tiny("llama", rope_theta=300000.0, rope_scaling={"rope_type": "linear", "factor": 2.0},
                                   rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}),
    "dict_theta_wins": tiny("llama", rope_theta=300000.0,
                            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}),
    "empty_rope_scaling": tiny("llama", rope_scaling={}, rope_theta=20000.0),
    "llama3_top_level_original": tiny("llama", original_max_position_embeddings=1024, rope_scaling={
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1, "high_freq_factor": 4,
        "original_max_position_embeddings": 2048}),
    "yarn_null_factor": tiny("llama", rope_scaling={"rope_type": "yarn", "factor": None,
                                                    "original_max_position_embeddings": 1024}),
    "yarn_no_original": tiny("llama", rope_scaling={"rope_type": "yarn", "factor": 4.0}),
    "yarn_truncate_null": tiny("llama", rope_scaling={"rope_type": "yarn", "factor": 4.0, "truncate": None,
                                                      "original_max_position_embeddings": 1024}),
    "partial_rotary_default_ignored": tiny("llama", partial_rotary_factor=0.5),
}


def analyze(name, cfg):
    d = tempfile.mkdtemp()
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f)
    config = AutoConfig.from_pretrained(d)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    rotary = type(model.model.rotary_emb)(config)  # on the CPU
    layers = model.model.layers
    attn, mlp = layers[0].self_attn, layers[0].mlp
    family = config.model_type
    if family == "mistral":
        windows = [config.sliding_window] * len(layers)
    else:
        windows = [getattr(layer.self_attn, "sliding_window", None) for layer in layers]

    def ids(v):
        return [] if v is None else list(v) if isinstance(v, (list, tuple)) else [v]

    rope = {k: v for k, v in config.rope_parameters.items()}
    facts = dict(
        family=family, vocab_size=config.vocab_size, hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size, layers=config.num_hidden_layers,
        heads=config.num_attention_heads, kv_heads=config.num_key_value_heads, head_dim=attn.head_dim,
        max_positions=config.max_position_embeddings, rms_norm_eps=model.model.norm.variance_epsilon,
        tie=model.lm_head.weight is model.model.embed_tokens.weight,
        qkv_bias=attn.q_proj.bias is not None, o_bias=attn.o_proj.bias is not None,
        mlp_bias=mlp.gate_proj.bias is not None, qk_norm=hasattr(attn, "q_norm"),
        sliding_windows=windows, attention_dropout=float(attn.attention_dropout),
        bos=ids(config.bos_token_id), eos=ids(config.eos_token_id), pad=config.pad_token_id,
        dtype=None if config.dtype is None else str(config.dtype).removeprefix("torch."),
        rope_parameters=rope, inv_freq=rotary.inv_freq.tolist(), attention_scaling=float(rotary.attention_scaling),
    )
    assert all(k.bias is None or k.bias is not None for k in [attn.k_proj, attn.v_proj])
    return config, rotary, facts


def check(folder):
    """Loads each DIR/<case>/config.json (written by LlamaConfig.json) in transformers; compares with the fixture."""
    with open(os.path.join(OUT, "config_cases.json")) as f:
        cases = {c["name"]: c["expected"] for c in json.load(f)["cases"]}
    failures = 0
    for name in sorted(os.listdir(folder)):
        expected = cases[name]
        with open(os.path.join(folder, name, "config.json")) as f:
            _, _, got = analyze(name, json.load(f))
        for key, value in expected.items():
            if key == "rope_parameters":  # the written form is normalized; compare what RoPE computes from it
                continue
            if got[key] != value:
                failures += 1
                print(f"{name}: {key} = {got[key]!r}, fixture {value!r}")
    print(f"checked {len(os.listdir(folder))} configs written by swift-lora: {failures} differences")
    return 1 if failures else 0


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--check":
        return check(sys.argv[2])
    os.makedirs(OUT, exist_ok=True)
    tensors = {"positions": torch.tensor(POSITIONS, dtype=torch.int64)}
    cases = []
    for name, cfg in ROPE_CASES.items():
        config, rotary, facts = analyze(name, cfg)
        half = rotary.inv_freq.numel()
        x = torch.zeros(1, len(POSITIONS), 2 * half, dtype=torch.float32)
        cos, sin = rotary(x, torch.tensor([POSITIONS]))
        cos, sin = cos[0], sin[0]
        assert torch.equal(cos[:, :half], cos[:, half:]) and torch.equal(sin[:, :half], sin[:, half:])
        if facts["rope_parameters"]["rope_type"] == "llama3" and name == "llama3":
            p = facts["rope_parameters"]
            wavelen = 2 * math.pi / rotary.original_inv_freq
            low = (wavelen > p["original_max_position_embeddings"] / p["low_freq_factor"]).sum().item()
            high = (wavelen < p["original_max_position_embeddings"] / p["high_freq_factor"]).sum().item()
            assert low > 0 and high > 0 and low + high < half, "llama3 case must hit all three bands"
        tensors[f"{name}.inv_freq"] = rotary.inv_freq.contiguous()
        tensors[f"{name}.cos"] = cos[:, :half].contiguous()
        tensors[f"{name}.sin"] = sin[:, :half].contiguous()
        cases.append(dict(name=name, rope_case=True, config=cfg, expected=facts))
    for name, cfg in CONFIG_CASES.items():
        _, _, facts = analyze(name, cfg)
        cases.append(dict(name=name, rope_case=False, config=cfg, expected=facts))
    meta = {"torch": torch.__version__, "transformers": transformers.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    save_file(tensors, os.path.join(OUT, "rope.safetensors"), metadata=meta)
    with open(os.path.join(OUT, "config_cases.json"), "w") as f:
        json.dump({"generated_with": meta, "cases": cases}, f, indent=1)
        f.write("\n")
    print(f"wrote {len(ROPE_CASES)} RoPE cases and {len(CONFIG_CASES)} config cases to {OUT} ({meta})")


if __name__ == "__main__":
    sys.exit(main())
