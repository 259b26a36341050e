"""Writes the Llama-family reference fixtures (Llama, Qwen2, Qwen3, Mistral, a bf16 sharded Llama) the Swift tests
compare against, so CI needs no PyTorch. The GPT-2 twin is make_fixtures.py, which also runs this script.

    venv/bin/python Tests/Fixtures/make_llama_fixtures.py                  # rewrites Tests/Fixtures/<model>/...
    venv/bin/python Tests/Fixtures/make_llama_fixtures.py --check DIR      # an adapter folder swift-lora wrote -> PEFT
    venv/bin/python Tests/Fixtures/make_llama_fixtures.py --check-merged DIR   # a merged model folder -> transformers

Everything is built offline from configs with random weights: a tokenizer trained on a few lines of text
(byte-level BPE with the Llama 3 or Qwen 2 split regex, or SentencePiece-style BPE with byte fallback), a tiny
model whose vocabulary is that tokenizer's, a PEFT LoRA adapter with non-zero B, a fixed batch, and what PyTorch +
transformers + PEFT compute for them (fp32 throughout). Seeds are fixed, so a rerun writes the same files.
Tests/Fixtures/README.md lists every file and tensor.
"""
import argparse, json, math, os, shutil, sys
import torch
from safetensors.torch import save_file, load_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # no __pycache__ in the fixtures folder
from make_fixtures import TEXT, TOKENIZER_CASES, adamw_steps  # gpt2-tiny's training text, tokenizer cases, AdamW loop

# Split regexes as in the Llama 3 and Qwen 2 tokenizer.json files (Qwen splits digits one by one).
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                r"\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
               r"\s*[\r\n]+|\s+(?!\S)|\s+")
GREEDY_PROMPT, GREEDY_NEW = 5, 8
TRAIN_STEPS, TRAIN_LR = 10, 1e-2


# ---------------------------------------------------------------------------------------------------- tokenizers
def bytelevel_tokenizer(style):
    """Byte-level BPE as Llama 3 ("llama3": BOS added by the post-processor) or Qwen 2 ("qwen2": NFC, no BOS) ship
    it. Returns (tokenizers.Tokenizer, tokenizer_config fields)."""
    from tokenizers import Tokenizer, models, trainers, pre_tokenizers, decoders, normalizers, processors, Regex
    tok = Tokenizer(models.BPE())
    if style == "llama3":
        specials, regex = ["<|begin_of_text|>", "<|end_of_text|>"], LLAMA3_SPLIT
    else:
        specials, regex = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], QWEN2_SPLIT
        tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, min_frequency=2, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(TEXT * 4, trainer)
    if style == "llama3":
        bos = tok.token_to_id(specials[0])
        tok.post_processor = processors.Sequence([
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single=f"{specials[0]} $A", pair=f"{specials[0]} $A {specials[0]} $B",
                                          special_tokens=[(specials[0], bos)])])
        fields = dict(bos_token=specials[0], eos_token=specials[1])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
        fields = dict(bos_token=None, eos_token=specials[0], pad_token=specials[0])
    return tok, fields


def sentencepiece_tokenizer():
    """SentencePiece-style BPE as Llama 2 / Mistral's tokenizer.json has it: "▁" for spaces and a prepended "▁"
    (normalizer), no pre-tokenizer, <unk> <s> </s> then the 256 byte tokens <0x00>..<0xFF> as ids 0..258, merges
    learned on the text, byte_fallback for characters outside the (deliberately small) alphabet, BOS added."""
    from tokenizers import Tokenizer, models, trainers, pre_tokenizers, decoders, normalizers, processors
    specials = ["<unk>", "<s>", "</s>"]
    learner = Tokenizer(models.BPE(unk_token="<unk>"))
    learner.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    # Learning splits at "▁" (like SentencePiece's split_by_whitespace) so no merge crosses a word boundary.
    learner.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never", split=True)
    # The 64 most frequent characters (ties by code point) are the alphabet; the rest fall back to bytes. Chosen
    # here because the trainer's own limit_alphabet breaks ties in hash order, so reruns would differ.
    counts = {}
    for line in TEXT:
        for ch in "▁" + line.replace(" ", "▁"):
            counts[ch] = counts.get(ch, 0) + 1
    alphabet = sorted(counts, key=lambda ch: (-counts[ch], ch))[:64]
    trainer = trainers.BpeTrainer(vocab_size=240, min_frequency=2, special_tokens=specials, limit_alphabet=64,
                                  initial_alphabet=alphabet, show_progress=False)
    learner.train_from_iterator(TEXT * 4, trainer)
    learned = json.loads(learner.to_str())["model"]
    pieces = [p for p, _ in sorted(learned["vocab"].items(), key=lambda kv: kv[1]) if p not in specials]
    vocab = {p: i for i, p in enumerate(specials + [f"<0x{b:02X}>" for b in range(256)] + pieces)}
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in learned["merges"]]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.add_special_tokens(specials)
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", vocab["<s>"])])
    return tok, dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def save_tokenizer(tok, fields, folder):
    """tokenizer.json + tokenizer_config.json (no chat template) as transformers writes them; returns the
    transformers tokenizer loaded back from the folder (what the cases record)."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast
    PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=64, **fields).save_pretrained(folder)
    loaded = AutoTokenizer.from_pretrained(folder)
    assert len(loaded) == tok.get_vocab_size(), (len(loaded), tok.get_vocab_size())
    return loaded


def tokenizer_cases(tokenizer, folder):
    """Each text's ids without and with the special tokens transformers adds, and the decode of the former."""
    cases = []
    for text in TOKENIZER_CASES:
        ids = tokenizer.encode(text, add_special_tokens=False)
        cases.append({"text": text, "ids": ids, "ids_with_special_tokens": tokenizer.encode(text),
                      "decoded": tokenizer.decode(ids)})
    with open(os.path.join(folder, "tokenizer_cases.json"), "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False, indent=1)
    return cases


# -------------------------------------------------------------------------------------------------------- models
def llama_config(vocab, tokenizer):
    from transformers import LlamaConfig
    # head_dim 8, theta 1e4: wavelengths 6.3, 63, 628, 6283. With original_max_position_embeddings 32 (transformers
    # wants it below max_position_embeddings), low_freq_factor 0.25 and high_freq_factor 2 the bands are < 16 kept,
    # > 128 divided by 8, between smoothed: one kept, one smoothed (smooth factor 0.148), two scaled.
    return LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=88, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-5,
                       rope_parameters={"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0,
                                        "low_freq_factor": 0.25, "high_freq_factor": 2.0,
                                        "original_max_position_embeddings": 32},
                       attention_bias=False, mlp_bias=False, tie_word_embeddings=False,
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)


def qwen2_config(vocab, tokenizer):
    from transformers import Qwen2Config
    return Qwen2Config(vocab_size=vocab, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-6,
                       rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}, tie_word_embeddings=True,
                       use_sliding_window=False, sliding_window=None, max_window_layers=2,
                       bos_token_id=None, eos_token_id=tokenizer.eos_token_id)


def qwen3_config(vocab, tokenizer):
    from transformers import Qwen3Config
    # head_dim 16 (q_proj 32 -> 64). YaRN with factor 2 = 64 / 32 (transformers warns unless factor is
    # max_position_embeddings / original_max_position_embeddings) ramps over rotary pairs 0..2 (beta_fast 32 ->
    # dim -1.6, floored, clamped to 0; beta_slow 1 -> dim 1.41, ceiled to 2): pair 0 kept, pair 1 half blended,
    # pairs 2..7 interpolated; attention factor 0.1 ln 2 + 1 = 1.0693 scales cos and sin.
    return Qwen3Config(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=64,
                       rms_norm_eps=1e-6, attention_bias=False, tie_word_embeddings=False,
                       rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, "factor": 2.0,
                                        "original_max_position_embeddings": 32},
                       use_sliding_window=False, sliding_window=None, max_window_layers=2,
                       bos_token_id=None, eos_token_id=tokenizer.eos_token_id)


def mistral_config(vocab, tokenizer):
    from transformers import MistralConfig
    # One KV head for four query heads (MQA, the extreme of GQA); a 4-position window on 12-position sequences.
    return MistralConfig(vocab_size=vocab, hidden_size=32, intermediate_size=80, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=1, max_position_embeddings=64,
                         rms_norm_eps=1e-5, sliding_window=4, tie_word_embeddings=False,
                         rope_parameters={"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0},
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)


SPECS = {
    # name: config, tokenizer, LoRA targets, use_rslora, batch shape, legacy config form, seed, full gradients;
    # or base (another fixture's weights in bf16) and shard size
    "llama-tiny": dict(config=llama_config, tokenizer="llama3", targets=["q_proj", "k_proj", "v_proj", "o_proj"],
                       rslora=False, shape=(2, 9), legacy=None, seed=10, full=True),
    "qwen2-tiny": dict(config=qwen2_config, tokenizer="qwen2", targets=["q_proj", "k_proj", "v_proj", "o_proj"],
                       rslora=True, shape=(2, 9), legacy="rope_theta", seed=20),
    "qwen3-tiny": dict(config=qwen3_config, tokenizer="qwen2", targets="all-linear", rslora=False, shape=(2, 9),
                       legacy=None, seed=30),
    "mistral-tiny": dict(config=mistral_config, tokenizer="sentencepiece",
                         targets=["q_proj", "k_proj", "v_proj", "o_proj"], rslora=False, shape=(2, 12),
                         legacy="rope_scaling", seed=40),
    "llama-tiny-bf16": dict(base="llama-tiny", targets=["q_proj", "k_proj", "v_proj", "o_proj"], rslora=False,
                            shape=(2, 9), seed=50, shard_size="45KB"),
}


def randomize(model):
    """Norm weights and biases off their 1 / 0 init, matrices 10x the 0.02 init (logit std ~1, attention not
    near-uniform), so every parameter matters."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.2 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
            else:
                p.mul_(10.0)


def load(folder):
    from transformers import AutoModelForCausalLM
    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()


def to_legacy_config(folder, form):
    """Rewrites config.json in the pre-5.0 form: rope_theta at the top level and, for "rope_scaling", the scaling
    as {"type": ..., "factor": ...}, as older checkpoints (and most on the hub) have it."""
    path = os.path.join(folder, "config.json")
    with open(path) as f:
        config = json.load(f)
    rope = config.pop("rope_parameters")
    config["rope_theta"] = rope.pop("rope_theta")
    kind = rope.pop("rope_type")
    config["rope_scaling"] = None if kind == "default" else {"type": kind, **rope}
    assert (form == "rope_scaling") == (config["rope_scaling"] is not None), (form, config["rope_scaling"])
    with open(path, "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)


def rope_bands(config):
    """Rotary pairs Llama 3 keeps, smooths and scales (to check the config exercises all three)."""
    p = config.rope_parameters
    head_dim = config.hidden_size // config.num_attention_heads
    wavelengths = [2 * math.pi * p["rope_theta"] ** (2 * i / head_dim) for i in range(head_dim // 2)]
    high = p["original_max_position_embeddings"] / p["high_freq_factor"]
    low = p["original_max_position_embeddings"] / p["low_freq_factor"]
    return (sum(w < high for w in wavelengths), sum(high <= w <= low for w in wavelengths),
            sum(w > low for w in wavelengths))


# ----------------------------------------------------------------------------------------------------- references
def lora_config(spec):
    from peft import LoraConfig
    return LoraConfig(r=4, lora_alpha=8, target_modules=spec["targets"], lora_dropout=0.0, bias="none",
                      use_rslora=spec["rslora"], task_type="CAUSAL_LM")


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


def greedy(model, prompt, count):
    """model.generate's greedy continuation (KV cache; eos does not stop it), checked against argmax decoding by
    full forwards without a cache, whose top two logits must differ by 1e-3 at least (no near-ties another
    implementation could break the other way)."""
    from transformers import GenerationConfig
    config = GenerationConfig(do_sample=False, max_new_tokens=count, min_new_tokens=0, eos_token_id=None,
                              pad_token_id=0, bos_token_id=None)
    with torch.no_grad():
        out = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), generation_config=config)
        ids = prompt
        for _ in range(count):
            last = model(input_ids=ids).logits[:, -1]
            top = last.topk(2, dim=-1).values
            assert (top[:, 0] - top[:, 1]).min().item() > 1e-3, f"near-tie in greedy step: {top.tolist()}"
            ids = torch.cat([ids, last.argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(out, ids), f"generate {out.tolist()} vs uncached greedy {ids.tolist()}"
    return out[0, prompt.shape[1]:].to(torch.int64)


def full_gradients(model, tokens):
    """Every weight's gradient of the plain model's loss (full fine-tuning)."""
    model.zero_grad()
    model(tokens, labels=tokens).loss.backward()
    grads = {"full." + name + ".grad": p.grad.detach().clone() for name, p in model.named_parameters()}
    model.zero_grad()
    return grads


def train_steps(folder, adapter_dir, tokens):
    """TRAIN_STEPS AdamW steps (lr TRAIN_LR; betas 0.9/0.999, eps 1e-8, weight decay 0.01: torch's defaults;
    constant schedule, no clipping) from the saved adapter on the fixed batch: the loss of each step's forward
    (before its update) and the adapter after the last step."""
    from peft import PeftModel
    model = PeftModel.from_pretrained(load(folder), adapter_dir, is_trainable=True)
    return adamw_steps(model, tokens, lr=TRAIN_LR, steps=TRAIN_STEPS)


def build(name):
    spec = SPECS[name]
    out = os.path.join(HERE, name)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    torch.manual_seed(spec["seed"])
    if "base" in spec:  # the base fixture's weights in bfloat16, sharded; computed on in float32
        base = os.path.join(HERE, spec["base"])
        for f in ("tokenizer.json", "tokenizer_config.json", "tokenizer_cases.json"):
            shutil.copy(os.path.join(base, f), out)
        load(base).to(torch.bfloat16).save_pretrained(out, safe_serialization=True,
                                                      max_shard_size=spec["shard_size"])
        shards = sorted(f for f in os.listdir(out) if f.startswith("model-") and f.endswith(".safetensors"))
        assert 2 <= len(shards) <= 3 and os.path.exists(os.path.join(out, "model.safetensors.index.json")), shards
        model = load(out)
        assert all(p.dtype == torch.float32 for p in model.parameters())
        with torch.no_grad():
            for (n, p), (_, q) in zip(model.named_parameters(), load(base).named_parameters()):
                assert torch.equal(p, q.to(torch.bfloat16).float()), n
    else:
        tok, fields = (sentencepiece_tokenizer() if spec["tokenizer"] == "sentencepiece"
                       else bytelevel_tokenizer(spec["tokenizer"]))
        tokenizer = save_tokenizer(tok, fields, out)
        tokenizer_cases(tokenizer, out)
        vocab = len(tokenizer)
        config = spec["config"](vocab, tokenizer)
        from transformers import AutoModelForCausalLM
        built = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
        randomize(built)
        built.save_pretrained(out, safe_serialization=True)
        if spec["legacy"]:
            to_legacy_config(out, spec["legacy"])
        model = load(out)
        with torch.no_grad():  # the folder (legacy config or not) reloads as exactly the model built
            probe = torch.arange(12).reshape(1, 12) % vocab
            assert torch.equal(model(probe).logits, built(probe).logits), name
            loaded_rope = {k: v for k, v in model.config.rope_parameters.items() if k != "type"}
            assert loaded_rope == built.config.rope_parameters, (loaded_rope, built.config.rope_parameters)
    vocab = model.config.vocab_size
    if model.config.model_type == "llama":
        kept, smoothed, scaled = rope_bands(model.config)
        assert kept and smoothed and scaled, (kept, smoothed, scaled)

    g = torch.Generator().manual_seed(spec["seed"] + 1)
    tokens = torch.randint(0, vocab, spec["shape"], generator=g)
    with torch.no_grad():
        base_logits = model(tokens).logits
        eager = load(out)
        eager.set_attn_implementation("eager")
        gap = (eager(tokens).logits - base_logits).abs().max().item()
        assert gap < 1e-5 * base_logits.abs().max().item(), f"{name}: eager vs sdpa {gap}"
    if model.config.model_type == "mistral":
        check_sliding_window(model, tokens, model.config.sliding_window, base_logits)
    tensors = {"tokens": tokens.to(torch.int64), "base_logits": base_logits.reshape(-1, vocab)}
    if spec.get("full"):
        tensors.update(full_gradients(model, tokens))
    prompt = tokens[:1, :GREEDY_PROMPT]
    tensors["greedy_prompt"] = prompt[0].clone()
    tensors["greedy_base"] = greedy(model, prompt, GREEDY_NEW)

    from peft import get_peft_model
    peft_model = get_peft_model(model, lora_config(spec))
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if "lora_B" in n:
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
    peft_model.eval()
    adapter_dir = os.path.join(out, "adapter")
    save_adapter(peft_model, adapter_dir)

    result = peft_model(tokens, labels=tokens)
    result.loss.backward()
    grads = {n.replace(".default", "") + ".grad": p.grad.detach().clone()
             for n, p in peft_model.named_parameters() if p.requires_grad}
    tensors.update({"lora_logits": result.logits.detach().reshape(-1, vocab), "loss": result.loss.detach().reshape(1)})
    tensors.update(grads)
    tensors["greedy_lora"] = greedy(peft_model, prompt, GREEDY_NEW)
    with torch.no_grad():
        merged = peft_model.merge_and_unload()
        tensors["merged_logits"] = merged(tokens).logits.reshape(-1, vocab)
    merged.save_pretrained(os.path.join(out, "merged"), safe_serialization=True)

    losses, trained = train_steps(out, adapter_dir, tokens)
    tensors["train_losses"] = losses
    tensors["train_lr"] = torch.tensor([TRAIN_LR], dtype=torch.float32)
    tensors.update(trained)
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(out, "expected.safetensors"))
    with open(os.path.join(out, "tokens.json"), "w") as f:
        json.dump(tokens.tolist(), f)
    specials = {i for i in (model.config.bos_token_id, model.config.eos_token_id) if i is not None}
    hit = specials & set(tensors["greedy_base"].tolist() + tensors["greedy_lora"].tolist())
    print(f"wrote {out}: vocab {vocab}, loss {result.loss.item():.6f}, {len(grads)} LoRA gradients, "
          f"train loss {losses[0]:.4f} -> {losses[-1]:.4f}, greedy base {tensors['greedy_base'].tolist()} "
          f"lora {tensors['greedy_lora'].tolist()}" + (f" (contains special ids {sorted(hit)})" if hit else ""))


def check_sliding_window(model, tokens, window, logits):
    """transformers' window: query i sees keys i-window+1 ... i. Two layers reach back 2*(window-1) positions, so
    changing token 0 must change logits at positions <= 2*(window-1) and leave every later one as it was."""
    changed = tokens.clone()
    changed[:, 0] = (changed[:, 0] + 1) % model.config.vocab_size
    with torch.no_grad():
        other = model(changed).logits
    reach = model.config.num_hidden_layers * (window - 1)
    assert tokens.shape[1] > reach + 1
    assert torch.equal(other[:, reach + 1:], logits[:, reach + 1:]), "window leaks past its reach"
    assert not torch.equal(other[:, reach], logits[:, reach]), "window shorter than expected"


# --------------------------------------------------------------------------------------------------------- checks
def fixture_for(folder, explicit):
    """The fixture a folder swift-lora wrote belongs to: --model, else the adapter's base_model_name_or_path or
    the model's model_type."""
    if explicit:
        return explicit
    adapter = os.path.join(folder, "adapter_config.json")
    if os.path.exists(adapter):
        with open(adapter) as f:
            base = json.load(f).get("base_model_name_or_path") or ""
        name = os.path.basename(os.path.normpath(base))
        if name in SPECS:
            return name
        sys.exit(f"{adapter}: base_model_name_or_path {base!r} names no fixture; pass --model ({', '.join(SPECS)})")
    with open(os.path.join(folder, "config.json")) as f:
        model_type = json.load(f).get("model_type")
    names = {"llama": "llama-tiny", "qwen2": "qwen2-tiny", "qwen3": "qwen3-tiny", "mistral": "mistral-tiny"}
    if model_type not in names:
        sys.exit(f"{folder}/config.json: model_type {model_type!r} is no fixture's; pass --model")
    return names[model_type]


def report(what, folder, logits, reference, tol):
    logits = logits.reshape(reference.shape)
    gap = ((logits - reference).abs().max() / reference.abs().max()).item()
    print(f"{what} loaded {folder}: max relative logit gap {gap:.3g}")
    sys.exit(0 if gap < tol else 1)


def check_adapter(folder, name, tol):
    """PEFT loads an adapter folder swift-lora wrote onto the fixture model; its logits are compared with those
    swift-lora saved next to it (expected_logits.safetensors: int64 `tokens` [B, T], float `logits`)."""
    from peft import PeftModel
    saved_path = os.path.join(folder, "expected_logits.safetensors")
    if not os.path.exists(saved_path):
        sys.exit(f"{saved_path}: missing (swift-lora writes the tokens and logits it computed there)")
    saved = load_file(saved_path)
    model = PeftModel.from_pretrained(load(os.path.join(HERE, name)), folder).eval()
    with torch.no_grad():
        logits = model(saved["tokens"]).logits
    report(f"PEFT ({name})", folder, logits, saved["logits"], tol)


def check_merged(folder, name, tol):
    """transformers loads a merged model folder swift-lora wrote (`lora merge` of the fixture's adapter); its logits
    are compared with PEFT's merge_and_unload logits (merged_logits)."""
    expected = load_file(os.path.join(HERE, name, "expected.safetensors"))
    with torch.no_grad():
        logits = load(folder)(expected["tokens"]).logits
    report(f"transformers ({name})", folder, logits, expected["merged_logits"], tol)


def main():
    for name in SPECS:  # llama-tiny before llama-tiny-bf16, which reads it
        build(name)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", metavar="DIR", help="an adapter folder swift-lora wrote: PEFT's logits vs its own")
    parser.add_argument("--check-merged", metavar="DIR", help="a merged model folder: transformers vs merged_logits")
    parser.add_argument("--model", choices=list(SPECS), help="the fixture the folder belongs to (else inferred)")
    parser.add_argument("--tol", type=float, default=1e-5, help="largest max relative logit gap that passes")
    args = parser.parse_args()
    if args.check:
        check_adapter(args.check, fixture_for(args.check, args.model), args.tol)
    elif args.check_merged:
        check_merged(args.check_merged, fixture_for(args.check_merged, args.model), args.tol)
    else:
        main()
