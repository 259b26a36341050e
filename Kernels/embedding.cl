// Embedding lookup: output[n, :] = table[ids[n], :] (or += when accumulate), one work-item per element; int32 ids.
// The table may be float32, bfloat16 or float16 (TABLE_TYPE, common.cl's dtype code), widened as it is read.
// An id outside [0, rows) writes NaN, which the host's NaN guard reports.

#ifndef TABLE_TYPE
#define TABLE_TYPE 0  // the table's dtype code: 0 float32, 1 bfloat16, 2 float16
#endif

__kernel void embedding(__global const TYPED_ELEM(TABLE_TYPE)* table, __global const int* ids, __global float* output,
                        const int rows, const int width, const int count, const int accumulate)
{
    const int i = get_global_id(0);
    if (i >= count * width) return;
    const int n = i / width, j = i % width;
    const int id = ids[n];
    float value = NAN;
    if (id >= 0 && id < rows) value = TYPED_LOAD(TABLE_TYPE, table, (long)id * width + j);
    output[i] = accumulate ? output[i] + value : value;
}

// dTable[ids[n], j] += dOutput[n, j]: one work-item per column j, summing over n in order (no atomics, the same
// order on every run). Invalid ids add nothing.
__kernel void embedding_backward(__global const int* ids, __global const float* d_output, __global float* d_table,
                                 const int rows, const int width, const int count)
{
    const int j = get_global_id(0);
    if (j >= width) return;
    for (int n = 0; n < count; n++) {
        const int id = ids[n];
        if (id >= 0 && id < rows) d_table[(long)id * width + j] += d_output[(long)n * width + j];
    }
}
