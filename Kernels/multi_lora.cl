// Many LoRA adapters in one batch (Punica's BGMV), a bank of S slots padded to rank R:
//   x [N, in], y [N, out], A [S, R, in] (PEFT's lora_A per slot), BT [S, R, out] (lora_B transposed per slot),
//   index [N] (int32, -1: base only), rank [S] (int32, 0: the slot adds nothing here), scale [S],
//   u [N, R] (scratch between the two kernels).
//   shrink:  u[i, q] = x[i]·A[a][q]             for q < rank[a], a = index[i]
//   expand:  y[i, o] += scale[a]·Σ_q u[i, q]·BT[a][q][o]   (neighbouring work-items read neighbouring o)
// One work-item per output element, no local memory and no barriers (slow on CPU devices such as PoCL). The shrink's
// dot products over `in` read four floats at a time into four partial sums (on PoCL ~2× the scalar loop; eight
// lanes measured no better). Rows whose adapter is -1 or of rank 0 are left untouched; u's entries past a row's rank
// are never written nor read.

__kernel void multi_lora_shrink(__global const float* x, __global const float* A, __global const int* index,
                                __global const int* rank, __global float* u,
                                const int count, const int in_features, const int max_rank)
{
    const int q = get_global_id(0), i = get_global_id(1);
    if (q >= max_rank || i >= count) return;
    const int a = index[i];
    if (a < 0 || q >= rank[a]) return;
    __global const float* xr = x + (long)i * in_features;
    __global const float* aq = A + ((long)a * max_rank + q) * in_features;
    float4 acc = (float4)(0.0f);
    const int full = in_features & ~3;
    for (int k = 0; k < full; k += 4) acc = fma(vload4(0, xr + k), vload4(0, aq + k), acc);
    float dot = (acc.x + acc.y) + (acc.z + acc.w);
    for (int k = full; k < in_features; k++) dot = fma(xr[k], aq[k], dot);
    u[(long)i * max_rank + q] = dot;
}

__kernel void multi_lora_expand(__global const float* u, __global const float* BT, __global const int* index,
                                __global const int* rank, __global const float* scale, __global float* y,
                                const int count, const int out_features, const int max_rank)
{
    const int o = get_global_id(0), i = get_global_id(1);
    if (o >= out_features || i >= count) return;
    const int a = index[i];
    if (a < 0) return;
    const int r = rank[a];
    if (r == 0) return;
    __global const float* ur = u + (long)i * max_rank;
    __global const float* bt = BT + (long)a * max_rank * out_features + o;
    float dot = 0.0f;
    for (int q = 0; q < r; q++) dot = fma(ur[q], bt[(long)q * out_features], dot);
    y[(long)i * out_features + o] += scale[a] * dot;
}
