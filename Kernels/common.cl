// Helpers every kernel file may use: the host puts this file in front of each program's source.
// Work-group reductions in a fixed tree order (results repeat run to run). Kernels that use them run with a
// power-of-two work-group of at most GROUP_MAX items and pass a __local float[GROUP_MAX] scratch.

#define GROUP_MAX 256

// Σ v over the work-group; every work-item gets the total. Every work-item must call it.
float group_sum(float v, __local float* scratch)
{
    const int lid = get_local_id(0);
    scratch[lid] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int step = get_local_size(0) / 2; step > 0; step /= 2) {
        if (lid < step) scratch[lid] += scratch[lid + step];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const float total = scratch[0];
    barrier(CLK_LOCAL_MEM_FENCE);  // the caller may reuse scratch at once
    return total;
}

// The largest v over the work-group (a NaN is dropped unless every value is NaN; sums carry NaN instead).
float group_max(float v, __local float* scratch)
{
    const int lid = get_local_id(0);
    scratch[lid] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int step = get_local_size(0) / 2; step > 0; step /= 2) {
        if (lid < step) scratch[lid] = fmax(scratch[lid], scratch[lid + step]);
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const float largest = scratch[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return largest;
}
