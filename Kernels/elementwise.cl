// Elementwise ops over flat buffers (bias add, axpy, dropout). One work-item per element.

// y [rows, cols] += bias [cols], broadcast over rows.
__kernel void add_bias(__global float* y, __global const float* bias, const int count, const int cols)
{
    const int i = get_global_id(0);
    if (i < count) y[i] += bias[i % cols];
}

// y += alpha·x over count elements.
__kernel void axpy(__global float* y, __global const float* x, const float alpha, const int count)
{
    const int i = get_global_id(0);
    if (i < count) y[i] += alpha * x[i];
}

// Inverted dropout: y = x / (1 − p) where hash(seed, i) >= threshold (= p·2³²), else 0. The hash is
// LoRARuntime's Dropout.hash (lowbias32), so both devices drop the same elements. y may alias x.
__kernel void dropout(__global const float* x, __global float* y, const uint threshold, const float scale,
                      const uint seed_low, const uint seed_high, const int count)
{
    const int i = get_global_id(0);
    if (i >= count) return;
    uint h = (uint)i * 0x9E3779B1u + seed_low;
    h ^= seed_high;
    h ^= h >> 16;
    h *= 0x7FEB352Du;
    h ^= h >> 15;
    h *= 0x846CA68Bu;
    h ^= h >> 16;
    y[i] = h < threshold ? 0.0f : x[i] * scale;
}
