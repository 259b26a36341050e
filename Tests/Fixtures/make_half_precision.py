"""Writes half_precision.txt: what PyTorch gives for float32 -> bfloat16 / float16 and back, for the edge cases of
both conversions (ties, subnormals, overflow, max values, infinities, NaN) and random values. Read by
Tests/LoRAFormatsTests/HalfPrecisionTests.swift; CI needs no PyTorch.

    venv/bin/python Tests/Fixtures/make_half_precision.py

Lines: `n <f32 bits> <bf16 bits> <f16 bits>` (narrowing, `tensor.to(torch.bfloat16)` / `.to(torch.float16)` on a
contiguous CPU tensor), `b <bf16 bits> <f32 bits>` and `h <f16 bits> <f32 bits>` (widening, `.to(torch.float32)`),
all in hex. PyTorch's NaN bit patterns depend on its code path (0xFFFF from the vectorized bfloat16 copy, 0x7FC0
from the scalar one), so readers compare NaN as NaN.
"""
import os
import numpy as np
import torch

f32 = [
    0x00000000, 0x80000000, 0x3F800000, 0xBF800000,             # ±0, ±1
    0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00000, 0x7F800001, 0x7FBFFFFF, 0xFFFFFFFF,  # inf, NaNs (quiet, signaling)
    0x7F7FFFFF, 0xFF7FFFFF, 0x7F7F7FFF, 0x7F7F8000, 0x7F7F0000,  # float max, bf16 max and the tie that overflows
    0x3F808000, 0x3F818000, 0x3F808001, 0x3F807FFF, 0x3F80C000,  # bf16 ties to even (down, up), either side of a tie
    0x00000001, 0x80000001, 0x007FFFFF, 0x00008000, 0x00018000, 0x00017FFF, 0x00400000, 0x00800000,  # f32 subnormals
    0x3F801000, 0x3F803000, 0x3F801001, 0x3F800FFF,             # f16 ties at 1 (1 + 2^-11, 1 + 3*2^-11), either side
    0x477FE000, 0x477FEFFF, 0x477FF000, 0x477FF001, 0x47800000, 0xC77FF000,  # 65504, below/at/above 65520, 65536
    0x38800000, 0x387FFFFF, 0x387FF000, 0x387FE000, 0xB87FF000,  # f16 min normal and just below it
    0x33800000, 0x33000000, 0x33000001, 0x33C00000, 0x34400000, 0x32FFFFFF, 0x33A00000, 0x80000000 | 0x33C00000,  # f16 subnormal ties
    0x35000000, 0x387FC000, 0x40490FDB, 0xC2F6E979, 0x3DCCCCCD, 0x5F000000, 0x1F000000,  # assorted
]
rng = np.random.default_rng(7)
for exponent_range in [(0, 255), (100, 150), (110, 145), (0, 5)]:
    for _ in range(40):
        e = int(rng.integers(*exponent_range))
        f32.append(int(rng.integers(0, 2)) << 31 | min(e, 255) << 23 | int(rng.integers(0, 1 << 23)))
values = torch.from_numpy(np.array(f32, dtype=np.uint32).view(np.float32))
bf16 = values.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
f16 = values.to(torch.float16).view(torch.int16).numpy().view(np.uint16)
lines = [f"n {a:08x} {b:04x} {c:04x}" for a, b, c in zip(f32, bf16, f16)]

halves = [0x0000, 0x8000, 0x0001, 0x8001, 0x03FF, 0x0200, 0x0400, 0x3C00, 0x3C01, 0x7BFF, 0xFBFF, 0x7C00, 0xFC00,
          0x7E00, 0x7C01, 0xFE09, 0x3555, 0x0080, 0x7F7F, 0x7F80, 0xFF80, 0x7FC0, 0xFFFF, 0x0081, 0x8080, 0x4049]
halves += [int(x) for x in rng.integers(0, 1 << 16, size=40)]
raw = torch.from_numpy(np.array(halves, dtype=np.uint16).view(np.int16))
for tag, dtype in [("b", torch.bfloat16), ("h", torch.float16)]:
    wide = raw.view(dtype).to(torch.float32).numpy().view(np.uint32)
    lines += [f"{tag} {a:04x} {b:08x}" for a, b in zip(halves, wide)]

path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "half_precision.txt")
with open(path, "w") as f:
    f.write(f"# written by make_half_precision.py with torch {torch.__version__}\n" + "\n".join(lines) + "\n")
print(f"{len(lines)} lines -> {path}")
