// The fused LoRA low-rank path, PEFT layout: x [N, in], A [r, in], B [out, r], y [N, out].
//   u = x·Aᵀ  (optionally written to u [N, r] for backward)
//   y += scale · u·Bᵀ
// One work-group per row of x. Phase 1: the work-items compute u's r dot products into local memory.
// Phase 2: after one barrier, they sweep the row's outputs, each reading u from local memory.
// Ranks above LORA_MAX_RANK are not handled here (the host runs two GEMMs instead).

#ifndef LORA_MAX_RANK
#define LORA_MAX_RANK 256   // largest r; local memory per work-group is 4·LORA_MAX_RANK bytes (1..4096)
#endif

__kernel void lora_forward(__global const float* x, __global const float* A, __global const float* B,
                           __global float* y, __global float* u, const int write_u,
                           const int in_features, const int out_features, const int rank, const float scale)
{
    __local float ul[LORA_MAX_RANK];
    const int row = get_group_id(0);
    const int lid = get_local_id(0);
    const int size = get_local_size(0);
    __global const float* xr = x + (long)row * in_features;

    for (int q = lid; q < rank; q += size) {
        __global const float* aq = A + (long)q * in_features;
        float dot = 0.0f;
        for (int i = 0; i < in_features; i++) dot += xr[i] * aq[i];
        ul[q] = dot;
        if (write_u) u[(long)row * rank + q] = dot;
    }
    barrier(CLK_LOCAL_MEM_FENCE);

    __global float* yr = y + (long)row * out_features;
    for (int o = lid; o < out_features; o += size) {
        __global const float* bo = B + (long)o * rank;
        float dot = 0.0f;
        for (int q = 0; q < rank; q++) dot += ul[q] * bo[q];
        yr[o] += scale * dot;
    }
}
