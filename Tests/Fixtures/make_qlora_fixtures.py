"""Writes the QLoRA (NF4 + double quantization) reference fixtures the Swift tests compare against (CI needs no
PyTorch or bitsandbytes): what bitsandbytes 0.50 computes on the CPU and what transformers + PEFT compute on the
4-bit models it saves.

    venv/bin/python Tests/Fixtures/make_qlora_fixtures.py             # rewrites nf4/, llama-tiny-nf4/, gpt2-tiny-nf4/,
                                                                      # llama-tiny-bf16-nf4/
    venv/bin/python Tests/Fixtures/make_qlora_fixtures.py --check DIR # a 4-bit folder swift-lora wrote -> transformers
                                                                      # (or a `lora merge` of the fixture adapter)

Two traps of bitsandbytes' CPU path are avoided here (the format's definition is flat blocks that may span rows):
- on AVX512-BF16 machines Linear4bit's inference forward repacks the weight and rounds absmax to bfloat16
  (`support_avx512bf16_for_cpu`): switched off before any model is built;
- its native CPU `dequantize_4bit` indexes absmax per row, which is wrong when a row's length is not a multiple of
  the blocksize: the generic `backends.default.ops._dequantize_4bit_compute` (flat blocks, what quantization uses)
  is registered for CPU instead.
A weight quantized from bfloat16 (llama-tiny-bf16-nf4) records quant_state dtype bfloat16, and bitsandbytes 0.50.2
then differs by direction: `dequantize_4bit` rounds the float32 products to bfloat16, and so does
`MatMul4Bit.backward` (dx = dy·dequantize_4bit(W).to(dy.dtype)), but the forward (`gemm_4bit`) dequantizes straight
to the input's dtype (float32 here), unrounded. The script asserts both, so a bitsandbytes that changes either fails
here rather than in the Swift tests.
Tests/Fixtures/README.md lists every file and tensor.
"""
import copy
import argparse, json, os, shutil, sys, warnings
import numpy as np
import torch
from safetensors.torch import save_file, load_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # no __pycache__ in the fixtures folder
from make_fixtures import adamw_steps  # the AdamW loop every fixture's 10 training steps use

NF4_DIR = os.path.join(HERE, "nf4")
TRAIN_STEPS, TRAIN_LR = 10, 1e-2


# ------------------------------------------------------------------------------------------------- bitsandbytes
def setup_bitsandbytes():
    """Imports bitsandbytes with its two CPU traps disabled (see the module docstring)."""
    import bitsandbytes
    import bitsandbytes.nn.modules as modules
    modules.has_avx512bf16 = lambda: False  # Linear4bit.__init__ reads it into support_avx512bf16_for_cpu
    from bitsandbytes.backends.default.ops import _dequantize_4bit_compute
    from bitsandbytes.backends.utils import _get_4bit_code
    generic = getattr(_dequantize_4bit_compute, "__wrapped__", _dequantize_4bit_compute)  # not torch.compile'd

    def dequantize_4bit_flat(A, absmax, blocksize, quant_type, shape, dtype):
        if A.dtype != torch.uint8:
            A = A.view(torch.uint8)
        return generic(A.reshape(-1), absmax, _get_4bit_code(quant_type, A.device), blocksize, shape, dtype)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Overriding a previously registered kernel": that is the point
        torch.library.register_kernel("bitsandbytes::dequantize_4bit", "cpu")(dequantize_4bit_flat)
    return bitsandbytes


def check_no_repacking(model):
    import bitsandbytes as bnb
    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert layers and not any(m.support_avx512bf16_for_cpu for m in layers)
    return layers


def state_dict_of(weight, state):
    """A quantized weight's tensors as Linear4bit's _save_to_state_dict names them (prefix `weight`)."""
    out = {"weight": weight}
    for k, v in state.as_dict(packed=True).items():
        out["weight." + k] = v
    return out


# ------------------------------------------------------------------------------------------------------ nf4 cases
def midpoint_block(code, scale, rng, n=64):
    """A block whose absmax is `scale` (its first element) and whose other elements sit exactly on the NF4
    midpoints times scale, on both sides, with their float32 neighbours (ties and near-ties)."""
    mids = ((code[:-1] + code[1:]) / 2).numpy().astype(np.float32)
    values = [np.float32(scale)]
    for m in mids:
        x = np.float32(m) * np.float32(scale)
        values += [x, np.nextafter(x, np.float32(np.inf)), np.nextafter(x, np.float32(-np.inf))]
    values = np.array(values, dtype=np.float32)
    filler = (np.float32(scale) * rng.uniform(-0.9, 0.9, max(0, n - len(values)))).astype(np.float32)
    return np.concatenate([values, filler])[:n]


def nf4_cases():
    """name -> (input float32 [rows, columns], blocksize, double quant, what it exercises)."""
    import bitsandbytes.functional as F
    code = F.get_4bit_type("nf4", device="cpu")
    rng = np.random.default_rng(1234)
    normal = lambda *shape: rng.standard_normal(shape).astype(np.float32)
    cases = {}

    def add(name, x, blocksize, double, what):
        cases[name] = (np.ascontiguousarray(x, dtype=np.float32), blocksize, double, what)

    add("span_odd_bs64_dq", normal(7, 45), 64, True, "rows of 45: blocks span rows; 315 elements (odd: last nibble padded); partial last block of 59")
    add("span_odd_bs64", normal(7, 45), 64, False, "the same shape with float32 absmax")
    add("bs32_tail1", normal(5, 13), 32, False, "65 elements: a last block of 1 element")
    add("bs32_dq", normal(9, 37), 32, True, "blocksize 32, double quant")
    add("bs128_dq", 0.02 * normal(10, 100), 128, True, "blocksize 128, weights at a typical 0.02 scale")
    add("bs4096_dq", normal(3, 3001), 4096, True, "blocksize 4096 (9003 elements: 2 full blocks and a partial one)")
    add("bs4096_single", normal(3, 33), 4096, False, "one partial block: no full block at all")
    x = normal(4, 50)
    x.reshape(-1)[64:128] = 0
    add("zero_block_dq", x, 64, True, "elements 64..127 all zero: a full block with absmax 0")
    add("zero_block", x.copy(), 64, False, "the same with float32 absmax")
    x = normal(3, 50)
    x.reshape(-1)[128:] = 0
    add("zero_tail", x, 64, False, "a partial last block of zeros: its absmax is stored as float32(1e-38) (clamped)")
    add("zero_tail_dq", x.copy(), 64, True, "the same, double quantized")
    blocks = [midpoint_block(code, s, rng) for s in (2.0, 0.5, 1.0, 0.37, 3.1, 1e-3)]
    add("midpoints", np.concatenate(blocks).reshape(6, 64), 64, False, "values exactly on the code midpoints (power-of-two absmax: exact ties) and their float32 neighbours")
    tail = midpoint_block(code, 2.0, rng, 45)
    add("midpoints_tail", np.concatenate(blocks[:2] + [tail]).reshape(173, 1), 64, True, "midpoint ties in a partial last block (divided by absmax, not multiplied by its reciprocal)")
    add("many_blocks_dq", normal(300, 70), 64, True, "329 blocks: 2 nested blocks, the second partial (73)")
    add("many_blocks_bs32_dq", normal(129, 131), 32, True, "529 blocks: 3 nested blocks")
    add("single_block_dq", normal(8, 8), 64, True, "one block: offset = its absmax, nested absmax 0")
    x = normal(16, 64)
    x[:, 0] = 1.5
    x = np.clip(x, -1.5, 1.5)
    add("equal_absmax_dq", x, 64, True, "every block has absmax 1.5: absmax - mean is all zero")
    x = normal(6, 64)
    x[0] *= 1e-30; x[1] *= 3e-39; x[2] *= 1e30; x[3] = 1e38 * np.sign(x[3]); x[4] *= 1e-6
    add("extremes", x, 64, False, "absmax 1e-30, subnormal (below the 1e-38 clamp: stored unclamped), 1e30, 1e38, 1e-6")
    add("extremes_dq", x.copy(), 64, True, "the same, double quantized")
    x = normal(2, 50)
    x.reshape(-1)[64:] *= 2e-39
    add("subnormal_tail", x, 64, False, "a partial last block whose absmax is below the clamp: stored as 1e-38")
    add("tiny", normal(3, 5), 64, True, "15 elements: one partial block")
    add("one", np.array([[0.75]], dtype=np.float32), 32, True, "a single element")
    return cases


def big_case_input(rows, columns):
    """A deterministic input the Swift test regenerates (too large to commit): element i is
    (((i * 2654435761 + 12345) mod 2^32) >> 8) / 2^23 - 1, times 1 + (i >> 12) % 7 (exact in float32)."""
    i = np.arange(rows * columns, dtype=np.uint64)
    h = ((i * np.uint64(2654435761) + np.uint64(12345)) & np.uint64(0xFFFFFFFF)) >> np.uint64(8)
    x = (h.astype(np.float32) / np.float32(8388608.0) - np.float32(1.0)) * (np.float32(1) + ((i >> np.uint64(12)) % np.uint64(7)).astype(np.float32))
    return x.reshape(rows, columns)


def fnv1a64(data):
    h = 0xcbf29ce484222325
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


# Cases whose dequantization is also stored as bitsandbytes returns it for a quant_state dtype of bfloat16 and
# float16 (`<case>.dequantized_bfloat16`, `_float16`): ties, subnormal and huge absmax (float16 overflows to inf).
DTYPE_CASES = ["span_odd_bs64_dq", "bs32_tail1", "zero_block_dq", "zero_tail", "midpoints", "extremes",
               "extremes_dq", "subnormal_tail", "tiny", "one"]


def dequantize_as(packed, state, dtype):
    """bitsandbytes' dequantize_4bit of a weight whose quant_state dtype is `dtype` (the bytes are the same)."""
    import bitsandbytes.functional as F
    state = copy.copy(state)
    state.dtype = dtype
    out = F.dequantize_4bit(packed, state)
    assert out.dtype == dtype
    return out


def make_nf4_cases():
    bnb = setup_bitsandbytes()
    F = bnb.functional
    os.makedirs(NF4_DIR, exist_ok=True)
    tensors, index = {}, []
    for name, (x, blocksize, double, what) in nf4_cases().items():
        w = torch.from_numpy(x)
        packed, state = F.quantize_4bit(w, blocksize=blocksize, quant_type="nf4", compress_statistics=double)
        raw_packed, raw_absmax = torch.ops.bitsandbytes.quantize_4bit(w, blocksize, "nf4", torch.uint8)
        assert torch.equal(raw_packed, packed)
        dequantized = F.dequantize_4bit(packed, state)
        assert dequantized.dtype == torch.float32 and dequantized.shape == w.shape
        for k, v in state_dict_of(packed, state).items():
            tensors[f"{name}.{k}"] = v
        tensors[f"{name}.input"] = w
        tensors[f"{name}.absmax_float32"] = raw_absmax  # the blocks' absmax before double quantization
        tensors[f"{name}.dequantized"] = dequantized
        if name in DTYPE_CASES:
            for dtype, key in ((torch.bfloat16, "bfloat16"), (torch.float16, "float16")):
                tensors[f"{name}.dequantized_{key}"] = rounded = dequantize_as(packed, state, dtype)
                assert torch.equal(rounded, dequantized.to(dtype)), name  # the float32 product, rounded once
        index.append({"name": name, "rows": x.shape[0], "columns": x.shape[1], "blocksize": blocksize,
                      "double_quant": double, "dtypes": name in DTYPE_CASES, "what": what})
    # The big case: > 32768 blocks, where torch's mean (the nested offset) splits the sum over threads.
    rows, columns, blocksize = 1024, 1040, 32
    w = torch.from_numpy(big_case_input(rows, columns))
    threads = torch.get_num_threads()
    packed, state = F.quantize_4bit(w, blocksize=blocksize, quant_type="nf4", compress_statistics=True)
    _, raw_absmax = torch.ops.bitsandbytes.quantize_4bit(w, blocksize, "nf4", torch.uint8)
    offsets = {}
    for t in sorted({1, 2, 3, threads}):
        torch.set_num_threads(t)
        offsets[str(t)] = raw_absmax.mean().item()
    torch.set_num_threads(threads)
    assert offsets[str(threads)] == state.offset.item()
    for k, v in state_dict_of(packed, state).items():
        if k != "weight":  # the packed bytes (530 KB) are checked through their hash
            tensors[f"big.{k}"] = v
    big = {"name": "big", "rows": rows, "columns": columns, "blocksize": blocksize, "double_quant": True,
           "torch_threads": threads, "offsets_by_threads": offsets,
           "weight_fnv1a64": fnv1a64(packed.numpy().tobytes()),
           "dequantized_fnv1a64": fnv1a64(F.dequantize_4bit(packed, state).numpy().tobytes()),
           "what": "1,064,960 elements, 33,280 blocks (> 32768: torch sums them in per-thread chunks); input from "
                   "big_case_input(); offsets_by_threads: torch's float32 mean of the absmax with 1, 2, 3 threads"}
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(NF4_DIR, "cases.safetensors"))
    with open(os.path.join(NF4_DIR, "cases.json"), "w") as f:
        json.dump({"bitsandbytes": bnb.__version__, "torch": torch.__version__, "cases": index, "big": big}, f, indent=1)
    print(f"wrote {NF4_DIR}: {len(index)} cases + big (torch threads {threads}, offsets {offsets})")


# ------------------------------------------------------------------------------------------------------- models
def bnb_config():
    from transformers import BitsAndBytesConfig
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.float32)


def load_4bit(folder, quantize=False, dtype=torch.float32):
    """A model folder loaded by transformers in 4 bits: quantized while loading (`quantize`, from a float
    folder: the linears are quantized from `dtype`, which their quant_state records) or as saved (a 4-bit folder,
    whose config.json carries quantization_config)."""
    from transformers import AutoModelForCausalLM
    kwargs = dict(quantization_config=bnb_config()) if quantize else {}
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, device_map="cpu", **kwargs).eval()
    check_no_repacking(model)
    if not quantize:
        # A saved folder computes in float32: transformers keeps the dtype a 4-bit folder's unquantized tensors are
        # stored in (bfloat16 for llama-tiny-bf16-nf4) whatever `dtype` says, so they are widened here (exactly).
        import bitsandbytes as bnb
        with torch.no_grad():
            for p in model.parameters():
                if not isinstance(p, bnb.nn.Params4bit) and p.is_floating_point() and p.dtype != torch.float32:
                    p.data = p.data.float()
    return model


def quantized_linears(model):
    import bitsandbytes as bnb
    return {n: m for n, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)}


def gpt2_source(folder):
    """A tiny GPT-2 of our own size (gpt2-tiny's tokenizer and recipe, n_embd 36): its c_attn [36, 108] and
    attn.c_proj [36, 36] have element counts that are not multiples of 64 (partial last blocks), and rows of 36
    make blocks start mid-row. Saved in float32 as `folder`."""
    from transformers import GPT2Config, GPT2LMHeadModel
    base = os.path.join(HERE, "gpt2-tiny")
    torch.manual_seed(60)
    config = GPT2Config(vocab_size=400, n_positions=32, n_embd=36, n_layer=2, n_head=4, n_inner=None,
                        activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                        bos_token_id=399, eos_token_id=399)
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # make_fixtures.make_model's recipe: random norms and biases, weights 5x their init
        for name, p in model.named_parameters():
            if "ln" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
            else:
                p.mul_(5.0)
    model.save_pretrained(folder, safe_serialization=True)
    for f in ("vocab.json", "merges.txt"):
        shutil.copy(os.path.join(base, f), folder)


SPECS = {
    # name: float source folder (relative to HERE), LoRA targets, seed, tokenizer files, and the dtype the source
    # is loaded in for quantization (quant_state dtype; the references always compute in float32)
    "llama-tiny-nf4": dict(source="llama-tiny", targets=["q_proj", "k_proj", "v_proj", "o_proj"], seed=70,
                           tokenizer=("tokenizer.json", "tokenizer_config.json")),
    "gpt2-tiny-nf4": dict(source="gpt2-tiny-nf4/float", targets=["c_attn", "c_proj"], seed=80,
                          tokenizer=("vocab.json", "merges.txt")),
    # llama-tiny-bf16's bfloat16 weights loaded as bfloat16 and quantized: quant_state dtype bfloat16, embeddings
    # and norms saved in bfloat16; the references load the saved folder with dtype=float32 (float32 compute).
    "llama-tiny-bf16-nf4": dict(source="llama-tiny-bf16", targets=["q_proj", "k_proj", "v_proj", "o_proj"], seed=90,
                                tokenizer=("tokenizer.json", "tokenizer_config.json"), dtype=torch.bfloat16),
}


def build(name):
    spec = SPECS[name]
    out = os.path.join(HERE, name)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    source = os.path.join(HERE, spec["source"])
    torch.manual_seed(spec["seed"])  # PEFT draws lora_A from the global generator
    if name == "gpt2-tiny-nf4":
        gpt2_source(source)
    import bitsandbytes.functional as F
    from transformers import AutoModelForCausalLM
    float_model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32).eval()
    dtype = spec.get("dtype", torch.float32)
    quantized = load_4bit(source, quantize=True, dtype=dtype)
    quantized.save_pretrained(out, safe_serialization=True)
    for f in spec["tokenizer"]:
        shutil.copy(os.path.join(source, f), out)
    model = load_4bit(out)  # references come from the folder as saved
    layers = quantized_linears(model)
    float_params = dict(float_model.named_parameters())
    saved = load_file(os.path.join(out, "model.safetensors"))
    tensors, unrounded = {}, {}
    spans = partial = 0
    for module, layer in layers.items():
        state = layer.weight.quant_state
        rows, columns = state.shape
        source_weight = float_params[module + ".weight"]
        if is_conv1d(float_model, module):  # GPT-2's Conv1D [in, out]: transformers quantizes its transpose
            source_weight = source_weight.t()
        assert source_weight.shape == (rows, columns), (module, source_weight.shape)
        # The saved bytes are bitsandbytes' quantize_4bit of the weight in [out, in] form, in the dtype it was
        # loaded in (which only the quant_state JSON records: bitsandbytes quantizes its exact float32 values).
        assert state.dtype == dtype, (module, state.dtype)
        packed, reference = F.quantize_4bit(source_weight.to(dtype).contiguous(), blocksize=64, quant_type="nf4",
                                            compress_statistics=True)
        for k, v in state_dict_of(packed, reference).items():
            assert torch.equal(saved[f"{module}.{k}"], v), (module, k)
        # dequantize_4bit returns the quant_state dtype (float32 products rounded); the forward uses them unrounded.
        tensors[f"dequantized.{module}.weight"] = F.dequantize_4bit(layer.weight.data, state)
        unrounded[module] = dequantize_as(layer.weight.data, state, torch.float32)
        spans += columns % 64 != 0
        partial += (rows * columns) % 64 != 0
    assert spans, f"{name}: no quantized weight has rows that blocks straddle"
    vocab = model.config.vocab_size

    g = torch.Generator().manual_seed(spec["seed"])
    tokens = torch.randint(0, vocab, (2, 9), generator=g)
    with torch.no_grad():
        tensors["base_logits"] = model(tokens).logits.reshape(-1, vocab)
        # The same model computed in float32 from the dequantized weights, unrounded (gemm_4bit dequantizes to the
        # input's dtype): what an implementation that dequantizes exactly must reproduce (and a check that
        # bitsandbytes' 4-bit matmul is just that).
        scale = tensors["base_logits"].abs().max().item()
        dense = dense_model(float_model, unrounded, layers)
        gap = (dense(tokens).logits.reshape(-1, vocab) - tensors["base_logits"]).abs().max().item()
        assert gap < 1e-5 * scale, f"{name}: 4-bit vs dequantized {gap}"
        if dtype != torch.float32:  # the forward really is unrounded: the rounded weights give other logits
            rounded = dense_model(float_model, dequantized_weights(tensors), layers)
            gap = (rounded(tokens).logits.reshape(-1, vocab) - tensors["base_logits"]).abs().max().item()
            assert gap > 1e-4 * scale, f"{name}: the forward matches {dtype}-rounded weights ({gap})"
            print(f"{name}: forward vs {dtype}-rounded dequantized weights: max relative logit gap {gap / scale:.3g}")

    from peft import LoraConfig, PeftModel, get_peft_model
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=spec["targets"], lora_dropout=0.0, bias="none",
                      task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, lora)
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if "lora_B" in n:
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
    peft_model.eval()
    adapter_dir = os.path.join(out, "adapter")
    save_adapter(peft_model, adapter_dir)
    result = peft_model(tokens, labels=tokens)
    result.loss.backward()
    if dtype != torch.float32:
        check_rounded_backward(layers, dtype)
    tensors.update({n.replace(".default", "") + ".grad": p.grad.detach().clone()
                    for n, p in peft_model.named_parameters() if p.requires_grad})
    tensors["lora_logits"] = result.logits.detach().reshape(-1, vocab)
    tensors["loss"] = result.loss.detach().reshape(1)
    with torch.no_grad():  # lora merge's definition on an NF4 base: dequantize, add the delta, keep it dense
        merged = dense_model(float_model, dequantized_weights(tensors), layers)
        for n, m in peft_model.named_modules():
            if hasattr(m, "get_delta_weight") and hasattr(m, "base_layer"):
                key = n.replace("base_model.model.", "", 1) + ".weight"
                target = dict(merged.named_parameters())[key]
                delta = m.get_delta_weight("default")
                target.add_(delta.t() if is_conv1d(float_model, key[:-len(".weight")]) else delta)
        tensors["merged_logits"] = merged(tokens).logits.reshape(-1, vocab)

    trainable = PeftModel.from_pretrained(load_4bit(out), adapter_dir, is_trainable=True)
    losses, trained = adamw_steps(trainable, tokens, lr=TRAIN_LR, steps=TRAIN_STEPS)
    tensors["train_losses"] = losses
    tensors["train_lr"] = torch.tensor([TRAIN_LR], dtype=torch.float32)
    tensors.update(trained)
    tensors["tokens"] = tokens.to(torch.int64)
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(out, "expected.safetensors"))
    with open(os.path.join(out, "tokens.json"), "w") as f:
        json.dump(tokens.tolist(), f)
    print(f"wrote {out}: {len(layers)} NF4 linears ({spans} with blocks straddling rows, {partial} with a partial "
          f"last block), loss {result.loss.item():.6f}, train loss {losses[0]:.4f} -> {losses[-1]:.4f}")


def is_conv1d(model, module):
    from transformers.pytorch_utils import Conv1D
    return isinstance(model.get_submodule(module), Conv1D)


def dequantized_weights(tensors):
    """module -> bitsandbytes' dequantize_4bit of its weight (in the quant_state dtype), from the expected tensors."""
    return {k[len("dequantized."):-len(".weight")]: v for k, v in tensors.items() if k.startswith("dequantized.")}


def dense_model(float_model, weights, layers):
    """A float32 copy of `float_model` whose quantized linears hold `weights[module]` (widened to float32)."""
    model = copy.deepcopy(float_model).eval()
    params = dict(model.named_parameters())
    with torch.no_grad():
        for module in layers:
            w = weights[module].float()
            target = params[module + ".weight"]
            target.copy_(w.t() if is_conv1d(float_model, module) else w)
    return model


def check_rounded_backward(layers, dtype):
    """bitsandbytes' input gradient of a Linear4bit with quant_state `dtype` multiplies by the rounded
    dequantization (`MatMul4Bit.backward`), its forward by the unrounded one (`gemm_4bit`): checked on one layer."""
    import bitsandbytes as bnb
    layer = next(iter(layers.values()))
    state = layer.weight.quant_state
    g = torch.Generator().manual_seed(5)
    x = torch.randn(7, state.shape[1], generator=g, requires_grad=True)
    dy = torch.randn(7, state.shape[0], generator=g)
    y = bnb.matmul_4bit(x, layer.weight.t(), quant_state=state)
    y.backward(dy)
    rounded = bnb.functional.dequantize_4bit(layer.weight.data, state).float()
    unrounded = dequantize_as(layer.weight.data, state, torch.float32)
    assert torch.equal(y, x @ unrounded.t()) and not torch.equal(y, x @ rounded.t()), "forward"
    assert torch.equal(x.grad, dy @ rounded) and not torch.equal(x.grad, dy @ unrounded), "backward"


def save_adapter(peft_model, folder):
    peft_model.save_pretrained(folder, safe_serialization=True)
    os.remove(os.path.join(folder, "README.md"))  # PEFT's model-card template
    path = os.path.join(folder, "adapter_config.json")
    with open(path) as f:
        config = json.load(f)
    config["target_modules"] = sorted(config["target_modules"])  # PEFT keeps a set: fix the order
    config["base_model_name_or_path"] = None  # PEFT writes the absolute path it loaded from
    with open(path, "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)


# --------------------------------------------------------------------------------------------------------- check
def check(folder, name, tol):
    """transformers + bitsandbytes load a 4-bit folder swift-lora wrote (`lora quantize` of the fixture's float
    source). Its logits on the fixture's tokens are compared with the fixture's base_logits (or, when the folder
    holds expected_logits.safetensors with `tokens` and `logits`, with those), and each tensor is compared with
    the fixture folder's bytes (reported; the logits decide)."""
    setup_bitsandbytes()
    with open(os.path.join(folder, "config.json")) as f:
        config = json.load(f)
    if name is None:
        name = {"llama": "llama-tiny-nf4", "gpt2": "gpt2-tiny-nf4"}.get(config.get("model_type"))
        if name is None:
            sys.exit(f"{folder}/config.json: model_type {config.get('model_type')!r} is no fixture's; pass --model")
    qc = config.get("quantization_config")
    if qc is None:
        return check_merged(folder, name, tol)
    if qc.get("quant_method") != "bitsandbytes" or not qc.get("load_in_4bit"):
        sys.exit(f"{folder}/config.json: no bitsandbytes 4-bit quantization_config ({qc!r})")
    model = load_4bit(folder)
    layers = quantized_linears(model)
    fixture = os.path.join(HERE, name)
    expected = load_file(os.path.join(fixture, "expected.safetensors"))
    saved_path = os.path.join(folder, "expected_logits.safetensors")
    if os.path.exists(saved_path):
        saved = load_file(saved_path)
        tokens, reference, against = saved["tokens"], saved["logits"], "its expected_logits.safetensors"
    else:
        tokens, reference, against = expected["tokens"], expected["base_logits"], f"{name}'s base_logits"
    from safetensors import safe_open
    mine, theirs = {}, load_file(os.path.join(fixture, "model.safetensors"))
    for file in sorted(os.listdir(folder)):
        if file == "model.safetensors" or (file.startswith("model-") and file.endswith(".safetensors")):
            with safe_open(os.path.join(folder, file), "pt") as f:
                mine.update({k: f.get_tensor(k) for k in f.keys()})
    differing = sorted(k for k in theirs if k not in mine or not torch.equal(mine[k], theirs[k]))
    extra = sorted(set(mine) - set(theirs))
    print(f"{len(layers)} NF4 linears; tensors equal to {name}'s: {len(theirs) - len(differing)}/{len(theirs)}"
          + (f"; differing or missing: {differing[:6]}{' ...' if len(differing) > 6 else ''}" if differing else "")
          + (f"; not in the fixture: {extra[:6]}" if extra else ""))
    with torch.no_grad():
        logits = model(tokens).logits.reshape(reference.shape)
    gap = ((logits - reference).abs().max() / reference.abs().max()).item()
    print(f"transformers + bitsandbytes loaded {folder}: max relative logit gap to {against} {gap:.3g}")
    sys.exit(0 if gap < tol else 1)


def check_merged(folder, name, tol):
    """A float folder swift-lora wrote with `lora merge` of the fixture's adapter into its 4-bit base: transformers
    loads it (no quantization) and its logits are compared with merged_logits (dequantized base + adapter delta)."""
    from transformers import AutoModelForCausalLM
    expected = load_file(os.path.join(HERE, name, "expected.safetensors"))
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    with torch.no_grad():
        logits = model(expected["tokens"]).logits.reshape(expected["merged_logits"].shape)
    reference = expected["merged_logits"]
    gap = ((logits - reference).abs().max() / reference.abs().max()).item()
    print(f"transformers loaded the merged {folder}: max relative logit gap to {name}'s merged_logits {gap:.3g}")
    sys.exit(0 if gap < tol else 1)


def main(only):
    setup_bitsandbytes()
    if not only:
        make_nf4_cases()
    for name in only or SPECS:
        build(name)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", metavar="DIR", help="a 4-bit model folder swift-lora wrote: transformers' logits")
    parser.add_argument("--model", choices=list(SPECS), help="the fixture the folder belongs to (else by model_type)")
    parser.add_argument("--tol", type=float, default=1e-5, help="largest max relative logit gap that passes")
    parser.add_argument("--only", nargs="+", choices=list(SPECS), help="rewrite only these model folders")
    args = parser.parse_args()
    if args.check:
        check(args.check, args.model, args.tol)
    else:
        main(args.only)
