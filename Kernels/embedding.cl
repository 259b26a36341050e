// Embedding lookup: output[n, :] = table[ids[n], :] (or += when accumulate), one work-item per element.
// An id that is not an integer in [0, rows) writes NaN, which the host's NaN guard reports.
__kernel void embedding(__global const float* table, __global const float* ids, __global float* output,
                        const int rows, const int width, const int count, const int accumulate)
{
    const int i = get_global_id(0);
    if (i >= count * width) return;
    const int n = i / width, j = i % width;
    const float id = ids[n];
    float value = NAN;
    if (id >= 0.0f && id == floor(id) && id < rows) value = table[(long)id * width + j];
    output[i] = accumulate ? output[i] + value : value;
}

// dTable[ids[n], j] += dOutput[n, j]: one work-item per column j, summing over n in order (no atomics, the same
// order on every run). Invalid ids add nothing.
__kernel void embedding_backward(__global const float* ids, __global const float* d_output, __global float* d_table,
                                 const int rows, const int width, const int count)
{
    const int j = get_global_id(0);
    if (j >= width) return;
    for (int n = 0; n < count; n++) {
        const float id = ids[n];
        if (id >= 0.0f && id == floor(id) && id < rows) d_table[(long)id * width + j] += d_output[(long)n * width + j];
    }
}
