"""Writes the training-data fixtures the Swift tests compare against (JSONL examples -> input_ids and labels, token
offsets, losses with labels), so CI needs no PyTorch.

    venv/bin/python Tests/Fixtures/make_data_fixtures.py      # rewrites Tests/Fixtures/chat-tiny/ and data-offsets.json

Nothing is downloaded. `chat-tiny/` is a tiny Llama (random weights, seed fixed) whose byte-level BPE tokenizer, trained
on a few lines, has Llama 3's and ChatML's special tokens; its tokenizer_config.json holds a Llama 3 style chat
template with `{% generation %}` markers and names bos/eos as AddedToken objects; `chatml.jinja` beside it is a ChatML
template without markers (the data path's `--chat-template`). The expected ids and labels are what HF computes:
- text:               tokenizer(text)["input_ids"] + [eos], every label kept;
- prompt/completion:  tokenizer(prompt)["input_ids"] + tokenizer(completion, add_special_tokens=False) + [eos], labels
                      on the completion and eos;
- messages, generation template: apply_chat_template(..., return_dict=True, return_assistant_tokens_mask=True);
- messages, no markers (the rule issue 14 states): for each assistant message i, the text render(messages[:i+1]) adds
  after the longest common prefix with render(messages[:i], add_generation_prompt=True); a token of the whole
  rendering is trained when its offsets overlap such a span (transformers' assistant-mask loop).
Labels are unshifted, -100 where there is no loss. `losses` are transformers' LlamaForCausalLM losses with those labels.
"""
import json, os, shutil, sys
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True
from make_fixtures import TEXT, TOKENIZER_CASES
from make_llama_fixtures import LLAMA3_SPLIT, llama_config, randomize

OUT = os.path.join(HERE, "chat-tiny")
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
            "<|im_start|>", "<|im_end|>"]

LLAMA3_GENERATION = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('Unknown role: ' + message['role']) }}{% endif %}"
    "<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"
    "{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] | trim }}<|eot_id|>{% endgeneration %}"
    "{% else %}{{ message['content'] | trim }}<|eot_id|>{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}")

CHATML = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "{% if message['role'] not in ['system', 'user', 'assistant'] %}{{ raise_exception('Unknown role: ' + message['role']) }}{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")

CHATS = [
    {"messages": [{"role": "system", "content": "You are a fox."}, {"role": "user", "content": "What do you do?"},
                  {"role": "assistant", "content": "The quick brown fox jumps over the lazy dog."}]},
    {"messages": [{"role": "user", "content": "  train adapters?\n"},
                  {"role": "assistant", "content": " LoRA freezes the pretrained weights. "},
                  {"role": "user", "content": "and then"},
                  {"role": "assistant", "content": "it learns a low-rank update:\n\tW + B·A"}]},
    {"messages": [{"role": "user", "content": "Ünïcödé?", "name": None},
                  {"role": "assistant", "content": "émoji 🦊🚀, CJK 漢字<|eot_id|> and <|im_end|> inside"}]},
    {"messages": [{"role": "user", "content": "numbers"}, {"role": "assistant", "content": "3.14159 and 1,000,000"},
                  {"role": "user", "content": "thanks"}]},
    {"messages": [{"role": "system", "content": "  indented code:"}, {"role": "user", "content": "for i in range(10):"},
                  {"role": "assistant", "content": "print(i)\n\ttabs\r\nand CRLF"}]},
]
TEXTS = [{"text": "The quick brown fox jumps over the lazy dog."}, {"text": "  indented code: for i in range(10)\n"},
         {"text": "Ünïcödé — émoji 🦊<|eot_id|> tail"}]
PROMPT_COMPLETIONS = [{"prompt": "LoRA freezes", "completion": " the pretrained weights."},
                      {"prompt": "numbers: ", "completion": "3.14159 and 1,000,000"},
                      {"prompt": "Q: fox?\nA:", "completion": " The quick brown fox<|end_of_text|>"}]


def train_tokenizer():
    from tokenizers import Tokenizer, models, trainers, pre_tokenizers, decoders, processors, Regex
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    words = [m["content"] for c in CHATS for m in c["messages"]] + ["system user assistant You are a helpful"]
    trainer = trainers.BpeTrainer(vocab_size=420, min_frequency=2, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator((TEXT + words) * 4, trainer)
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
                                      special_tokens=[("<|begin_of_text|>", 0)])])
    return tok


def build_folder():
    from transformers import AutoTokenizer, AutoModelForCausalLM, PreTrainedTokenizerFast
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    tok = train_tokenizer()
    PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=256, bos_token=SPECIALS[0],
                            eos_token="<|eot_id|>").save_pretrained(OUT)
    # The chat template goes into tokenizer_config.json (the older layout; chat_template.jinja, when present, wins),
    # and bos/eos as AddedToken objects, as many hub folders have them.
    config_path = os.path.join(OUT, "tokenizer_config.json")
    with open(config_path, encoding="utf-8") as f:
        config = json.load(f)
    def added(content):
        return {"__type": "AddedToken", "content": content, "lstrip": False, "normalized": False, "rstrip": False,
                "single_word": False, "special": True}
    config.update(bos_token=added(SPECIALS[0]), eos_token=added("<|eot_id|>"), chat_template=LLAMA3_GENERATION)
    with open(config_path, "w", encoding="utf-8") as f:
        json.dump(config, f, ensure_ascii=False, indent=2)
    if os.path.exists(os.path.join(OUT, "chat_template.jinja")):
        os.remove(os.path.join(OUT, "chat_template.jinja"))
    with open(os.path.join(OUT, "chatml.jinja"), "w", encoding="utf-8") as f:
        f.write(CHATML)
    tokenizer = AutoTokenizer.from_pretrained(OUT)
    assert tokenizer.chat_template == LLAMA3_GENERATION and tokenizer.bos_token == SPECIALS[0]
    assert tokenizer.eos_token == "<|eot_id|>"

    torch.manual_seed(60)
    config = llama_config(len(tokenizer), tokenizer)
    config.max_position_embeddings = 256
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    randomize(model)
    model.save_pretrained(OUT, safe_serialization=True)
    return tokenizer, AutoModelForCausalLM.from_pretrained(OUT, dtype=torch.float32).eval()


def hf_mask(offsets, spans):
    """transformers 5.24's assistant-mask loop: a token is masked when its offsets overlap a span."""
    mask, span = [0] * len(offsets), 0
    for i, (start, end) in enumerate(offsets):
        while span < len(spans) and start >= spans[span][1]:
            span += 1
        if span == len(spans):
            break
        if end > spans[span][0]:
            mask[i] = 1
    return mask


def render(tokenizer, template, messages, add_generation_prompt):
    from transformers.utils.chat_template_utils import render_jinja_template
    rendered, _ = render_jinja_template(conversations=[messages], chat_template=template,
                                        add_generation_prompt=add_generation_prompt, **tokenizer.special_tokens_map)
    return rendered[0]


def chat_generation(tokenizer, chat):
    out = tokenizer.apply_chat_template(chat["messages"], tokenize=True, return_dict=True,
                                        return_assistant_tokens_mask=True)
    ids = list(out["input_ids"])
    return {"input_ids": ids, "labels": [t if m else -100 for t, m in zip(ids, out["assistant_masks"])]}


def chat_incremental(tokenizer, chat):
    messages = [{k: v for k, v in m.items() if v is not None} for m in chat["messages"]]
    full = render(tokenizer, CHATML, messages, False)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = render(tokenizer, CHATML, messages[:i], True)
        upto = render(tokenizer, CHATML, messages[:i + 1], False)
        assert full.startswith(upto)
        common = 0
        while common < min(len(before), len(upto)) and before[common] == upto[common]:
            common += 1
        spans.append((common, len(upto)))
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    mask = hf_mask(enc["offset_mapping"], spans)
    return {"input_ids": ids, "labels": [t if m else -100 for t, m in zip(ids, mask)]}


def text_example(tokenizer, line):
    ids = tokenizer(line["text"])["input_ids"] + [tokenizer.eos_token_id]
    return {"input_ids": ids, "labels": list(ids)}


def prompt_completion_example(tokenizer, line):
    prompt = tokenizer(line["prompt"])["input_ids"]
    completion = tokenizer(line["completion"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return {"input_ids": prompt + completion, "labels": [-100] * len(prompt) + completion}


def write_jsonl(name, lines):
    with open(os.path.join(OUT, name), "w", encoding="utf-8") as f:
        for line in lines:
            f.write(json.dumps(line, ensure_ascii=False) + "\n")


def losses(model, examples):
    """Each example's loss with its labels, and the loss of all of them as one right-padded batch (labels -100 on
    the padding): transformers' mean over every trained target of the batch."""
    each = []
    with torch.no_grad():
        for e in examples:
            each.append(model(input_ids=torch.tensor([e["input_ids"]]), labels=torch.tensor([e["labels"]])).loss.item())
        length = max(len(e["input_ids"]) for e in examples)
        pad = lambda row, value: row + [value] * (length - len(row))
        ids = torch.tensor([pad(e["input_ids"], 0) for e in examples])
        labels = torch.tensor([pad(e["labels"], -100) for e in examples])
        mask = torch.tensor([pad([1] * len(e["input_ids"]), 0) for e in examples])
        batch = model(input_ids=ids, attention_mask=mask, labels=labels).loss.item()
    return each, batch


def trimming_tokenizer():
    """gpt2-bpe with add_prefix_space and a ByteLevel post-processor that trims offsets (RoBERTa's setting), the one
    case where HF moves offsets past spaces. Written to chat-tiny/trim-offsets/."""
    folder = os.path.join(OUT, "trim-offsets")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(HERE, "tokenizers", "gpt2-bpe", "tokenizer.json"), encoding="utf-8") as f:
        tok = json.load(f)
    tok["pre_tokenizer"]["add_prefix_space"] = True
    tok["post_processor"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}
    with open(os.path.join(folder, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tok, f, ensure_ascii=False)
    return folder


def offsets_fixture():
    """Token ids and character offsets (add_special_tokens=False) of texts through every tokenizer fixture."""
    from tokenizers import Tokenizer
    folders = sorted(os.path.join("tokenizers", d) for d in os.listdir(os.path.join(HERE, "tokenizers")))
    folders += ["llama-tiny", "qwen2-tiny", "mistral-tiny", "chat-tiny", os.path.relpath(trimming_tokenizer(), HERE)]
    texts = TOKENIZER_CASES + ["<s>Hello</s> world", "x</s> y", "<|im_start|>user\n hi<|im_end|>\n",
                               "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi  there<|eot_id|>",
                               "a <|endoftext|>  b", "  Hello  world  "]
    out = {}
    for folder in folders:
        tok = Tokenizer.from_file(os.path.join(HERE, folder, "tokenizer.json"))
        cases = []
        for text in texts:
            enc = tok.encode(text, add_special_tokens=False)
            cases.append({"text": text, "ids": enc.ids, "offsets": [list(o) for o in enc.offsets]})
        out[folder] = cases
    # GPT-2's vocab.json + merges.txt, as transformers loads it (converted to a fast tokenizer).
    from transformers import AutoTokenizer
    gpt2 = AutoTokenizer.from_pretrained(os.path.join(HERE, "gpt2-tiny"))
    cases = []
    for text in texts:
        enc = gpt2(text, add_special_tokens=False, return_offsets_mapping=True)
        cases.append({"text": text, "ids": enc["input_ids"], "offsets": [list(o) for o in enc["offset_mapping"]]})
    out["gpt2-tiny"] = cases
    with open(os.path.join(HERE, "data-offsets.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False)


def main():
    tokenizer, model = build_folder()
    write_jsonl("chat.jsonl", CHATS)
    write_jsonl("text.jsonl", TEXTS)
    write_jsonl("prompt_completion.jsonl", PROMPT_COMPLETIONS)
    generation = [chat_generation(tokenizer, c) for c in CHATS]
    incremental = [chat_incremental(tokenizer, c) for c in CHATS]
    texts = [text_example(tokenizer, t) for t in TEXTS]
    completions = [prompt_completion_example(tokenizer, p) for p in PROMPT_COMPLETIONS]
    for name, examples in [("generation", generation), ("incremental", incremental)]:
        for e, c in zip(examples, CHATS):  # every assistant message is trained on, nothing else is
            assert any(l != -100 for l in e["labels"]), (name, c)
    each, batch = losses(model, generation)
    expected = {"chat_generation": generation, "chat_incremental": incremental, "text": texts,
                "prompt_completion": completions, "chat_generation_losses": each, "chat_generation_batch_loss": batch}
    with open(os.path.join(OUT, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(expected, f, ensure_ascii=False)
    offsets_fixture()
    print("chat-tiny: vocab", len(tokenizer), "lengths", [len(e["input_ids"]) for e in generation],
          "losses", [round(x, 4) for x in each], "batch", round(batch, 4))


if __name__ == "__main__":
    main()
