// Whole-tensor Σ x or Σ x² in two launches with a fixed shape (set by the host from the element count only),
// so the order of additions repeats run to run: reduce_partials leaves one sum per work-group, reduce_final
// adds those with one work-group.

float term(const float v, const int squares) { return squares ? v * v : v; }

__kernel void reduce_partials(__global const float* x, __global float* partials, const int count, const int squares)
{
    __local float scratch[GROUP_MAX];
    float s = 0.0f;
    for (int i = get_global_id(0); i < count; i += get_global_size(0)) s += term(x[i], squares);
    const float total = group_sum(s, scratch);
    if (get_local_id(0) == 0) partials[get_group_id(0)] = total;
}

// result[0] = Σ partials (or += when accumulate).
__kernel void reduce_final(__global const float* partials, __global float* result, const int groups, const int accumulate)
{
    __local float scratch[GROUP_MAX];
    float s = 0.0f;
    for (int i = get_local_id(0); i < groups; i += get_local_size(0)) s += partials[i];
    const float total = group_sum(s, scratch);
    if (get_local_id(0) == 0) result[0] = accumulate ? result[0] + total : total;
}
