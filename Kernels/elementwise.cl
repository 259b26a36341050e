// Elementwise ops (bias add, axpy, dropout, block copy). One work-item per element.

// y[batch][i, j] += bias[j]: a bias broadcast over the rows of a strided batch of matrices (element (i, j) of
// batch b at offset + b·stride + i·ld + j), a whole [rows, cols] tensor included. Global: (cols, rows, batches).
__kernel void add_bias(__global float* y, const int offset, const int ld, const int stride, __global const float* bias)
{
    const int j = get_global_id(0), i = get_global_id(1), batch = get_global_id(2);
    y[offset + (long)batch * stride + (long)i * ld + j] += bias[j];
}

// y += alpha·x over count elements.
__kernel void axpy(__global float* y, __global const float* x, const float alpha, const int count)
{
    const int i = get_global_id(0);
    if (i < count) y[i] += alpha * x[i];
}

// Inverted dropout: y = x / (1 − p) where hash(seed, offset + i) >= threshold (= p·2³²), else 0. The OpenCL C copy of
// Dropout.hash and Dropout.drops in Sources/LoRARuntime/Elementwise.swift (lowbias32; the seed's words as
// Dropout.seedWords splits them), so both devices drop the same elements: change them together. y may alias x.
__kernel void dropout(__global const float* x, __global float* y, const uint threshold, const float scale,
                      const uint seed_low, const uint seed_high, const uint offset, const int count)
{
    const int i = get_global_id(0);
    if (i >= count) return;
    uint h = ((uint)i + offset) * 0x9E3779B1u + seed_low;
    h ^= seed_high;
    h ^= h >> 16;
    h *= 0x7FEB352Du;
    h ^= h >> 15;
    h *= 0x846CA68Bu;
    h ^= h >> 16;
    y[i] = h < threshold ? 0.0f : x[i] * scale;
}

// destination[b][i, j] = source[b][i, j] for blocks addressed like GEMM operands (offset + b·stride + i·ld + j).
// Global: (cols, rows, batch).
__kernel void block_copy(__global const float* source, const int source_offset, const int source_ld, const int source_stride,
                         __global float* destination, const int destination_offset, const int destination_ld,
                         const int destination_stride, const int rows, const int cols)
{
    const int j = get_global_id(0), i = get_global_id(1), b = get_global_id(2);
    if (j >= cols || i >= rows) return;
    destination[destination_offset + (long)b * destination_stride + (long)i * destination_ld + j] =
        source[source_offset + (long)b * source_stride + (long)i * source_ld + j];
}
