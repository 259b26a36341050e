"""Writes dtype-conversions.json: what PyTorch's `.to(torch.bfloat16)` / `.to(torch.float16)` give for chosen float32
bit patterns (ties, overflow, subnormals, infinities, random values), and the float32 values of 16-bit patterns, so
the Swift tests check `Convert` bit for bit without PyTorch (CI).

    venv/bin/python Tests/Fixtures/make_dtype_fixtures.py      # rewrites Tests/Fixtures/dtype-conversions.json

NaN is left out on purpose: PyTorch itself gives different bf16 NaN bits on its scalar (0x7FC0) and vectorized
(0xFFFF) paths; swift-lora keeps a NaN's sign and sets the quiet bit, which the tests check separately.
"""
import json, os, random, struct
import torch

HERE = os.path.dirname(os.path.abspath(__file__))


def f32(bits):
    return struct.unpack("<f", struct.pack("<I", bits))[0]


def bits_of(t, dtype):
    return [x & 0xFFFF for x in t.to(dtype).view(torch.int16).tolist()]


def main():
    chosen = [
        0x00000000, 0x80000000, 0x3F800000, 0xBF800000, 0x7F800000, 0xFF800000,  # ±0, ±1, ±inf
        0x7F7FFFFF, 0xFF7FFFFF, 0x00800000, 0x80800000,  # largest finite, smallest normal
        0x00000001, 0x00008000, 0x0000C000, 0x00018000, 0x007FFFFF, 0x807FFFFF,  # subnormals, bf16 ties among them
        0x3F808000, 0x3F818000, 0x3F808001, 0x3F807FFF, 0xBF808000, 0xBF818000,  # bf16 ties to even, either side
        0x7F7F8000, 0x7F7F7FFF,  # the tie at the top of bf16's range goes to inf; just below it does not
        0x3F801000, 0x3F803000, 0x3F801001,  # float16 ties to even (1 + 2^-11, 1 + 3·2^-11)
        0x477FE000, 0x477FEFFF, 0x477FF000, 0x47800000,  # float16's largest (65504), below and at the tie to inf
        0x33800000, 0x33000000, 0x33400000, 0x33C00000, 0x387FC000, 0x38800000,  # float16 subnormals and their ties
        0x40490FDB, 0x3EAAAAAB, 0xC2F6E979,  # pi, 1/3, -123.456
    ]
    rng = random.Random(7)
    while len(chosen) < 400:
        bits = rng.getrandbits(32)
        if (bits & 0x7F800000) != 0x7F800000:  # no NaN or inf
            chosen.append(bits)
    values = torch.tensor([f32(b) for b in chosen], dtype=torch.float32)
    bf16 = bits_of(values, torch.bfloat16)
    f16 = bits_of(values, torch.float16)
    # Widening and the 16-bit to 16-bit conversions, from the rounded values (each rounded once, through float32).
    from_bf16 = values.to(torch.bfloat16)
    from_f16 = values.to(torch.float16)
    out = {
        "float32": chosen,
        "bfloat16": bf16,
        "float16": f16,
        "bfloat16_as_float32": [x & 0xFFFFFFFF for x in from_bf16.float().view(torch.int32).tolist()],
        "float16_as_float32": [x & 0xFFFFFFFF for x in from_f16.float().view(torch.int32).tolist()],
        "bfloat16_to_float16": bits_of(from_bf16, torch.float16),
        "float16_to_bfloat16": bits_of(from_f16, torch.bfloat16),
        "torch": torch.__version__,
    }
    with open(os.path.join(HERE, "dtype-conversions.json"), "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
