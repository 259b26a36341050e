// The fused LoRA low-rank path, PEFT layout: x [N, in], A [r, in], B [out, r], y [N, out].
//   u = x·Aᵀ  (optionally written to u [N, r] for backward)
//   y += scale · u·Bᵀ
// One work-group per row of x. Phase 1 computes u's r dot products into local memory: with fewer ranks than
// work-items, each dot is split over size/r work-items (neighbours read neighbouring x, coalesced on GPUs) and
// the partial sums are added in local memory; with more ranks, each work-item takes whole dots. Phase 2, after a
// barrier, sweeps the row's outputs, each work-item reading u from local memory.
// Ranks above LORA_MAX_RANK are not handled here (the host runs two GEMMs instead).

#ifndef LORA_MAX_RANK
#define LORA_MAX_RANK 256   // largest r; local memory per work-group is 4·LORA_MAX_RANK bytes (1..4096)
#endif
#ifndef LORA_WG
#define LORA_WG 64          // largest work-group size the host launches with (1..1024)
#endif

__kernel void lora_forward(__global const float* x, __global const float* A, __global const float* B,
                           __global float* y, __global float* u, const int write_u,
                           const int in_features, const int out_features, const int rank, const float scale)
{
    __local float ul[LORA_MAX_RANK];
    __local float partial[LORA_WG];
    const int row = get_group_id(0);
    const int lid = get_local_id(0);
    const int size = get_local_size(0);
    __global const float* xr = x + (long)row * in_features;

    if (rank < size) {
        const int parts = size / rank;           // work-items per dot product
        const int q = lid / parts, part = lid % parts;
        float dot = 0.0f;
        if (q < rank) {
            __global const float* aq = A + (long)q * in_features;
            for (int i = part; i < in_features; i += parts) dot += xr[i] * aq[i];
        }
        partial[lid] = dot;
        barrier(CLK_LOCAL_MEM_FENCE);
        if (lid < rank) {
            float sum = 0.0f;
            for (int t = 0; t < parts; t++) sum += partial[lid * parts + t];
            ul[lid] = sum;
        }
    } else {
        for (int q = lid; q < rank; q += size) {
            __global const float* aq = A + (long)q * in_features;
            float dot = 0.0f;
            for (int i = 0; i < in_features; i++) dot += xr[i] * aq[i];
            ul[q] = dot;
        }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    if (write_u) for (int q = lid; q < rank; q += size) u[(long)row * rank + q] = ul[q];

    __global float* yr = y + (long)row * out_features;
    for (int o = lid; o < out_features; o += size) {
        __global const float* bo = B + (long)o * rank;
        float dot = 0.0f;
        for (int q = 0; q < rank; q++) dot += ul[q] * bo[q];
        yr[o] += scale * dot;
    }
}
