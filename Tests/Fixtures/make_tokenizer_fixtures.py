"""Writes the tokenizer.json fixtures LoRATokenizersTests compare against (CI needs no Python).

    /work/venv/bin/python Tests/Fixtures/make_tokenizer_fixtures.py   # rewrites Tests/Fixtures/tokenizers/*/

Nothing is downloaded: each tokenizer is trained offline with Hugging Face `tokenizers` on the few lines below,
then its pipeline is set the way a real model's tokenizer.json has it (Llama 3 / Qwen2 byte-level BPE with a Split
regex, Llama 2 / Mistral SentencePiece-style BPE with byte fallback, a Metaspace variant, GPT-2's own files).
Every folder gets tokenizer.json, a small tokenizer_config.json (bos/eos) and cases.json: for each hard text,
HF's ids with add_special_tokens False and True, HF's decode of those ids (keeping and skipping specials), and
the pre-tokenizer's pieces of the normalized text (so a split that differs is caught even where merges hide it).
"""
import functools, json, os, random, shutil
from tokenizers import Tokenizer, AddedToken, models, normalizers, pre_tokenizers, decoders, processors, trainers, Regex

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "tokenizers")

CORPUS = [
    "The quick brown fox jumps over the lazy dog. It's 2026, and we'll train adapters!",
    "LoRA freezes the pretrained weights and learns a low-rank update: W + B*A, scaled by alpha / r.",
    "    indented code: for i in range(10): print(i)\n\ttabs\r\nand CRLF line endings\r\n",
    "She's sure they're right; you'd think we've seen it. I'm here, I'll stay, he'd go.",
    "Numbers like 3.14159, 1,000,000 and 20260101 appear in logs: step 42 loss 2.718.",
    "def tokenize(text):\n    return [vocab[piece] for piece in split(text)]\n",
    "Tokenizers split text into pieces, merge the most frequent pairs, and map pieces to ids.",
    "Ünïcödé café naïve résumé — émigré façade, plus a little 漢字 and かな.",
    "hello world, hello there, hello again: the model says hello back.",
]
CORPUS = [line for line in CORPUS for _ in range(3)]

# The hard texts: whitespace of every kind, contractions, digits, scripts the corpus never saw (byte fallback),
# emoji with ZWJ and skin tones, combining marks, zero-width and BOM characters, special tokens inside words.
random.seed(7)
ALPHABET = list("abcdefghij KLMNOP 0123456789 .,;:'!?-_\n\t\r") + ["é", "e\u0301", "漢", "字", "🦊", "👍🏽", "\u200b", "\u00a0", "ß", "Σ", "ſ"]
RANDOM_PARAGRAPH = "".join(random.choice(ALPHABET) for _ in range(600))
TEXTS = [
    "", " ", "  ", "   ", "\t", "\n", "\r\n", "\r\n\r\n", " \r\n x", "a\r\nb", "a\n\n\nb", "x  y   z    w",
    "hello", " hello", "hello ", "  hello  ", "Hello world", "HELLO WORLD", "tab\tend\t\tx",
    "don't I'll they're we've you'd she's it'S THEY'RE WE'LL 'tis O'Neill x'ſ y'Sa 'ſa 'Ka 'ﬆa 'İa",
    "1", "12", "123", "1234", "12345678901234567890", "3.14159 and 1,000,000", "v2.0.1-rc3", "٣٤٥ ௧௨ ⅷ ½",
    "漢字かなカナ한국어", "日本語のテキスト。", "Ünïcödé café naïve", "e\u0301\u0302 a\u0308 n\u0303", "\u00e9 vs e\u0301",
    "🦊", "👍🏽👍🏿", "👨‍👩‍👧‍👦 family", "🏳️‍🌈 flag", "emoji🦊inside", "\U0001F600\U0001F601",
    "zero\u200bwidth", "\ufeffbom", "nbsp\u00a0here", "ideographic\u3000space", "line\u2028sep", "nel\u0085x",
    "vt\u000bff\u000c", "mongol\u180evs", "\u0000nul", "del\u007f", "x\u200d\u200cy", "\u2581already metaspace",
    "Ωμέγα Σίσυφος ΣΑΣ", "Straße STRASSE", "ﬁne ﬀ ① ｆｕｌｌ", "مرحبا بالعالم", "שלום", "привет мир",
    "the  quick\tbrown\n\nfox", "___---+++", "?!.,;:", "(a) [b] {c} <d>", "a.b.c", "@user #tag $5 %20",
    "```python\nprint('hi')\n```", "    def f(x):\n        return x\n", "http://example.com/a?b=c&d=e",
]


def special_texts(specials):
    """Texts with the special tokens at the edges, inside words, doubled, with spaces around."""
    out = []
    for s in specials:
        out += [s, f"hi{s}there", f"{s}hello", f"hello{s}", f" {s} ", f"{s}{s}", f"a {s}b", f"a{s} b",
                f"{s[:-1]}", f"x{s[1:]}"]
    return out


def write(name, tok, config, extra_texts, note):
    folder = os.path.join(OUT, name)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    tok.save(os.path.join(folder, "tokenizer.json"))
    tok = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))  # the cases come from the file as saved
    with open(os.path.join(folder, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, ensure_ascii=False, indent=2)
    cases = []
    for text in TEXTS + extra_texts + [RANDOM_PARAGRAPH]:
        ids = tok.encode(text, add_special_tokens=False).ids
        with_special = tok.encode(text, add_special_tokens=True).ids
        cases.append({
            "text": text, "ids": ids, "ids_with_special": with_special,
            "decoded": tok.decode(ids, skip_special_tokens=False),
            "decoded_with_special": tok.decode(with_special, skip_special_tokens=False),
            "decoded_skipping_special": tok.decode(with_special, skip_special_tokens=True),
        })
        if tok.pre_tokenizer is not None:  # the pre-tokenizer alone on the normalized text: checks the split itself
            normalized = tok.normalizer.normalize_str(text) if tok.normalizer is not None else text
            cases[-1]["pretokens"] = [piece for piece, _ in tok.pre_tokenizer.pre_tokenize_str(normalized)]
    # Random id sequences (cut UTF-8, lone byte tokens, specials anywhere): HF's decode of each.
    rng = random.Random(name)
    size = tok.get_vocab_size(with_added_tokens=True)
    decodes = []
    for _ in range(40):
        ids = [rng.randrange(size) for _ in range(rng.randint(1, 12))]
        decodes.append({"ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False),
                        "decoded_skipping_special": tok.decode(ids, skip_special_tokens=True)})
    with open(os.path.join(folder, "cases.json"), "w", encoding="utf-8") as f:
        json.dump({"note": note, "vocab_size": size, "cases": cases, "decode_cases": decodes},
                  f, ensure_ascii=False, indent=1)
    print(f"{name}: vocab {tok.get_vocab_size(True)}, {len(cases)} cases, "
          f"{os.path.getsize(os.path.join(folder, 'tokenizer.json'))} bytes")


def edit(tok, change):
    """The tokenizer with its JSON edited by `change` (for settings the Python constructors do not expose)."""
    data = json.loads(tok.to_str())
    change(data)
    return Tokenizer.from_str(json.dumps(data, ensure_ascii=False))


LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def byte_level_tokenizer(pattern):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=700, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    return tok


def llama3():
    tok = byte_level_tokenizer(LLAMA3_SPLIT)
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    # Non-special added tokens of each flavour: a normalized one, one that eats spaces on both sides, a single word.
    tok.add_tokens([AddedToken("<tool>", normalized=True), AddedToken("<mask>", lstrip=True, rstrip=True, normalized=False),
                    AddedToken("word", single_word=True, normalized=False)])
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B:1",
                                      special_tokens=[("<|begin_of_text|>", bos)]),
    ])
    tok = edit(tok, lambda d: d["model"].update(ignore_merges=True))
    extra = special_texts(["<|eot_id|>", "<|begin_of_text|>"]) + [
        "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>", "a<tool>b <tool> c", "x <mask> y", "x<mask>y",
        "  <mask>  ", "word words sword word. (word)", "<|eot_id|><|eot_id|>", "<|eot_id",
    ]
    write("llama3-bpe", tok, {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}, extra,
          "byte-level BPE, Llama 3 Split regex + ByteLevel(use_regex=false), ignore_merges, specials after the vocab, BOS template")


def qwen2():
    tok = byte_level_tokenizer(QWEN2_SPLIT)
    tok.normalizer = normalizers.NFC()
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]])
    tok.post_processor = processors.ByteLevel(trim_offsets=False)

    def legacy_merges(d):  # merges as "a b" strings, as older files have them
        d["model"]["merges"] = [" ".join(pair) for pair in d["model"]["merges"]]
    tok = edit(tok, legacy_merges)
    extra = special_texts(["<|im_end|>"]) + ["<|im_start|>system\nYou are helpful.<|im_end|>\n"]
    write("qwen2-bpe", tok, {"bos_token": None, "eos_token": {"content": "<|im_end|>", "special": True}}, extra,
          "byte-level BPE, Qwen2 Split regex (single digits), NFC, merges as strings, no BOS")


@functools.cache
def sentencepiece_json():
    """A SentencePiece-style vocabulary: <unk> <s> </s>, the 256 <0xNN> byte tokens, then ▁-prefixed pieces.
    Trained once and shared by the three SentencePiece-style folders (training breaks ties differently per run)."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    bytes_ = [f"<0x{b:02X}>" for b in range(256)]
    trainer = trainers.BpeTrainer(vocab_size=900, min_frequency=2, show_progress=False,
                                  special_tokens=["<unk>", "<s>", "</s>"] + bytes_, limit_alphabet=70)
    tok.train_from_iterator(CORPUS, trainer)
    data = json.loads(tok.to_str())
    data["added_tokens"] = [t for t in data["added_tokens"] if t["content"] in ("<unk>", "<s>", "</s>")]
    return json.dumps(data, ensure_ascii=False)


def sentencepiece_vocab():
    return json.loads(sentencepiece_json())


def spm_decoder():
    return {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
        {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}


def template(bos="<s>", bos_id=1):
    return {"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": bos, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {bos: {"id": bos, "ids": [bos_id], "tokens": [bos]}}}


SPM_EXTRA = special_texts(["<s>", "</s>"]) + ["<unk>", "a<unk>b", "[INST] hi [/INST]", "▁▁x", "x▁"]


def llama2():
    data = sentencepiece_vocab()
    data["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]}
    data["pre_tokenizer"] = None
    data["decoder"] = spm_decoder()
    data["post_processor"] = template()
    tok = Tokenizer.from_str(json.dumps(data, ensure_ascii=False))
    write("llama2-spm", tok, {"bos_token": {"content": "<s>", "lstrip": False}, "eos_token": "</s>", "unk_token": "<unk>"},
          SPM_EXTRA, "SentencePiece-style BPE (Llama 2 / Mistral): byte fallback, Prepend+Replace normalizer, no pre-tokenizer")


def metaspace():
    data = sentencepiece_vocab()
    data["normalizer"] = {"type": "NFKC"}
    data["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": True}
    data["decoder"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": True}
    data["post_processor"] = template()
    data["model"]["fuse_unk"] = False
    # A non-special added token that is normalized (NFKC applies to its pattern) and one eating the space on its left.
    n = len(data["model"]["vocab"])
    data["added_tokens"] += [
        {"id": n, "content": "<ｔｏｏｌ>", "single_word": False, "lstrip": False, "rstrip": False, "normalized": True, "special": False},
        {"id": n + 1, "content": "<mask>", "single_word": False, "lstrip": True, "rstrip": False, "normalized": False, "special": True},
    ]
    tok = Tokenizer.from_str(json.dumps(data, ensure_ascii=False))
    write("metaspace-spm", tok, {"bos_token": "<s>", "eos_token": "</s>"},
          SPM_EXTRA + ["a <tool> b", "a<ｔｏｏｌ>b", "x   <mask> y", "<mask>x"],
          "SentencePiece-style BPE: NFKC, Metaspace pre-tokenizer (prepend first, split), Metaspace decoder, no fuse_unk")


def metaspace_nosplit():
    data = sentencepiece_vocab()
    data["normalizer"] = None
    data["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": False}
    data["decoder"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": False}
    data["post_processor"] = None
    tok = Tokenizer.from_str(json.dumps(data, ensure_ascii=False))
    write("metaspace-nosplit-spm", tok, {"bos_token": "<s>", "eos_token": "</s>"}, SPM_EXTRA,
          "SentencePiece-style BPE: Metaspace (prepend always, no split: whole text is one word), no post-processor")


def misc_byte_level():
    """Less common components on the Llama 3 vocabulary: NFKD + StripAccents + Lowercase + a Replace regex, and
    splits with every delimiter behaviour, Digits, and ByteLevel's own regex with a prefix space."""
    tok = byte_level_tokenizer(LLAMA3_SPLIT)
    tok.normalizer = normalizers.Sequence([normalizers.NFKD(), normalizers.StripAccents(), normalizers.Lowercase(),
                                           normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split("-", behavior="merged_with_previous"),
        pre_tokenizers.Split(Regex("[.,;]"), behavior="merged_with_next"),
        pre_tokenizers.Split(Regex("[()]"), behavior="removed"),
        pre_tokenizers.Split(Regex("[a-e]+"), behavior="contiguous", invert=True),
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True),
    ])
    tok.add_special_tokens([AddedToken("<|eot_id|>", special=True, normalized=False)])
    write("misc-bytelevel", tok, {"eos_token": "<|eot_id|>"}, special_texts(["<|eot_id|>"]) + ["a-b-c", "x.y,z;w", "(f(x))", "--..,,"],
          "byte-level BPE with NFKD/StripAccents/Lowercase/Replace, Split behaviours, Digits, ByteLevel(add_prefix_space)")


def misc_sentencepiece():
    """Strip + NFD normalizers, Whitespace / WhitespaceSplit / Digits(contiguous) splits, Metaspace (never), unk."""
    data = sentencepiece_vocab()
    data["normalizer"] = {"type": "Sequence", "normalizers": [{"type": "Strip", "strip_left": True, "strip_right": True}, {"type": "NFD"}]}
    data["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "WhitespaceSplit"}, {"type": "Digits", "individual_digits": False}, {"type": "Whitespace"},
        {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "never", "split": True}]}
    data["decoder"] = {"type": "Sequence", "decoders": [{"type": "ByteFallback"}, {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "never", "split": True}]}
    data["model"]["byte_fallback"] = False
    data["post_processor"] = {"type": "RobertaProcessing", "sep": ["</s>", 2], "cls": ["<s>", 1], "trim_offsets": True, "add_prefix_space": False}
    tok = Tokenizer.from_str(json.dumps(data, ensure_ascii=False))
    write("misc-spm", tok, {"bos_token": "<s>", "eos_token": "</s>"}, SPM_EXTRA,
          "SentencePiece-style vocabulary without byte fallback (unk, not fused): Strip + NFD, Whitespace/Digits splits, Roberta processor")


def suffix_bpe():
    """A classic (non-byte-level) BPE: continuing_subword_prefix "##", end_of_word_suffix "</w>", unk, Lowercase,
    Whitespace pre-tokenizer, BPEDecoder, Bert post-processor."""
    tok = Tokenizer(models.BPE(unk_token="[UNK]", continuing_subword_prefix="##", end_of_word_suffix="</w>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.BPEDecoder(suffix="</w>")
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=500, special_tokens=["[UNK]", "[CLS]", "[SEP]"], continuing_subword_prefix="##",
        end_of_word_suffix="</w>", show_progress=False))
    tok.post_processor = processors.BertProcessing(("[SEP]", tok.token_to_id("[SEP]")), ("[CLS]", tok.token_to_id("[CLS]")))
    write("suffix-bpe", tok, {"bos_token": "[CLS]", "eos_token": "[SEP]"}, special_texts(["[SEP]"]),
          "BPE with continuing_subword_prefix and end_of_word_suffix, unk, Lowercase, Whitespace, BPEDecoder, Bert processor")


def gpt2():
    """GPT-2's own files from the gpt2-tiny fixture, as a tokenizer.json `tokenizers` writes."""
    base = os.path.join(HERE, "gpt2-tiny")
    tok = Tokenizer(models.BPE.from_file(os.path.join(base, "vocab.json"), os.path.join(base, "merges.txt")))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.add_special_tokens([AddedToken("<|endoftext|>", special=True, normalized=False)])
    write("gpt2-bpe", tok, {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"},
          special_texts(["<|endoftext|>"]), "GPT-2 byte-level BPE (gpt2-tiny's vocab.json + merges.txt) as tokenizer.json")


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    llama3(); qwen2(); llama2(); metaspace(); metaspace_nosplit(); misc_byte_level(); misc_sentencepiece(); suffix_bpe(); gpt2()
