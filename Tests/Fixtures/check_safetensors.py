"""Checks a model folder written by swift-lora's SafeTensorsWriter.writeCheckpoint with the Python stack.

    LORA_FORMATS_EXPORT=/tmp/st swift test --skip-build --filter exportForTransformers
    venv/bin/python Tests/Fixtures/check_safetensors.py /tmp/st

1. `safetensors.torch.load_file` reads every shard; the index's weight_map matches each shard's keys exactly,
   `metadata.total_size` is the sum of tensor bytes, and every tensor is bf16.
2. Every value equals PyTorch's own bf16 rounding (`.to(torch.bfloat16)`) of the float32 values the Swift test wrote
   (SafeTensorsCheckpointTests.values: (i·7919 + seed·104729) mod 100003 + 0.5 − 50000, seed = the tensor's position).
3. transformers' `from_pretrained` loads the folder (config.json is there) with no missing, unexpected or
   mismatched keys, and its parameters are those tensors.
4. huggingface_hub's `split_torch_state_dict_into_shards` (what save_pretrained uses) gives, for the tensors in the
   order they were written with max_shard_size 600, the same shard names, weight_map and total_size; and
   transformers' `save_pretrained` is that split over the keys sorted by name.
Prints one line per check; exits non-zero on the first failure. CI does not run it (no PyTorch there).
"""
import json
import os
import sys
import tempfile

import torch
from huggingface_hub import split_torch_state_dict_into_shards
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

folder = sys.argv[1]
index = json.load(open(os.path.join(folder, "model.safetensors.index.json")))
weight_map = index["weight_map"]
tensors = {}
for shard in sorted(set(weight_map.values())):
    loaded = load_file(os.path.join(folder, shard))
    listed = sorted(k for k, v in weight_map.items() if v == shard)
    assert sorted(loaded) == listed, f"{shard}: holds {sorted(loaded)}, index lists {listed}"
    assert not set(loaded) & set(tensors), f"{shard}: tensors also in another shard"
    tensors.update(loaded)
total = sum(t.numel() * t.element_size() for t in tensors.values())
assert index["metadata"]["total_size"] == total, f"total_size {index['metadata']['total_size']} != {total}"
assert all(t.dtype == torch.bfloat16 for t in tensors.values()), {k: t.dtype for k, t in tensors.items()}
print(f"ok: {len(set(weight_map.values()))} shards, {len(tensors)} bf16 tensors, total_size {total}, index matches shards")

model, info = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16, output_loading_info=True)
problems = {k: v for k, v in info.items() if v}
assert not problems, f"transformers loading info: {problems}"
state = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}  # tied to wte, not saved
assert list(state) == [k for k in state if k in tensors] and len(state) == len(tensors), "key sets differ"
for seed, (name, param) in enumerate(state.items()):
    n = param.numel()
    wide = ((torch.arange(n, dtype=torch.int64) * 7919 + seed * 104729) % 100003).to(torch.float32) + 0.5 - 50000
    expected = wide.to(torch.bfloat16).reshape(param.shape)
    assert torch.equal(tensors[name].view(torch.int16), expected.view(torch.int16)), f"{name}: values differ from torch's bf16 rounding"
    assert torch.equal(param.view(torch.int16), tensors[name].view(torch.int16)), f"{name}: model parameter differs from file"
print(f"ok: from_pretrained loads it (no missing/unexpected/mismatched keys); every value is torch's bf16 rounding")

# Our items went in GPT-2's state_dict order (each shard's tensors lie in file order, shards in sequence).
order = []
for shard in sorted(set(weight_map.values())):
    header_len = int.from_bytes(open(os.path.join(folder, shard), "rb").read(8), "little")
    header = json.loads(open(os.path.join(folder, shard), "rb").read(8 + header_len)[8:])
    order += sorted((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][0])
assert order == list(state), f"file order {order} is not the state_dict order"
split = split_torch_state_dict_into_shards({k: tensors[k] for k in order}, max_shard_size=600)
assert split.tensor_to_filename == weight_map, f"huggingface_hub splits differently: {split.tensor_to_filename}"
assert split.metadata["total_size"] == total
print(f"ok: huggingface_hub's split_torch_state_dict_into_shards gives the same shards, names and total_size")

# transformers 5.24's save_pretrained hands the split its keys sorted by name; so the same items, sorted, give its
# files exactly.
with tempfile.TemporaryDirectory() as out:
    model.save_pretrained(out, max_shard_size=600)
    theirs = json.load(open(os.path.join(out, "model.safetensors.index.json")))
    split = split_torch_state_dict_into_shards({k: tensors[k] for k in sorted(order)}, max_shard_size=600)
    assert theirs["weight_map"] == split.tensor_to_filename, "save_pretrained does not split the sorted keys"
    assert theirs["metadata"]["total_size"] == total
print("ok: save_pretrained(max_shard_size=600) splits the keys sorted by name the same way")
