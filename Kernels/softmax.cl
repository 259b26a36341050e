// Softmax over the last axis of x [rows, cols], with a scale and an optional causal mask, and its gradient.
// Two variants. One work-item per row (softmax_forward, softmax_backward: CPU devices; rows are many, batch·heads·T,
// and no local memory or barriers are needed, which PoCL runs slowly), and one work-group per row (the _group
// kernels at the end: GPUs). The host picks by device kind unless `lora tune`'s cache says otherwise.
// Causal: x is [..., Tq, Tk]; row r sees keys j <= r % Tq + (Tk - Tq), and with a window W > 0 only the last W of
// those (a sliding window; window 0: none). With segment starts (packed rows: hasStarts 1), row r sees keys from
// starts[(r / Tq / blocksPerSequence)·Tq + r % Tq] on as well (block-diagonal causal). Masked entries of y are 0.

// Keys row r sees without the window: all cols when not causal, else j <= r % queryLength + (cols - queryLength).
// The OpenCL C copy of Softmax.visibleCount in Sources/LoRARuntime/Softmax.swift (the rule's home; keep them alike).
int visible_count(const int r, const int cols, const int causal, const int queryLength)
{
    return causal ? clamp(r % queryLength + (cols - queryLength) + 1, 0, cols) : cols;
}

// The first key row r sees: 0, or the start of its window (Softmax.visibleKeys), or its segment's start when later
// (SegmentStarts.keys: a start past the visible keys leaves none).
int first_visible(const int r, const int visible, const int window, __global const int* starts, const int hasStarts,
                  const int queryLength, const int blocksPerSequence)
{
    const int first = window > 0 ? max(0, visible - window) : 0;
    if (!hasStarts) return first;
    const int start = starts[(r / queryLength / blocksPerSequence) * queryLength + r % queryLength];
    return max(first, min(start, visible));
}

__kernel void softmax_forward(__global const float* x, __global float* y, const int rows, const int cols,
                              const float scale, const int causal, const int queryLength, const int window,
                              __global const int* starts, const int hasStarts, const int blocksPerSequence)
{
    const int r = get_global_id(0);
    if (r >= rows) return;
    const int visible = visible_count(r, cols, causal, queryLength);
    const int first = first_visible(r, visible, window, starts, hasStarts, queryLength, blocksPerSequence);
    __global const float* xr = x + (long)r * cols;
    __global float* yr = y + (long)r * cols;

    float maximum = -INFINITY;
    for (int j = first; j < visible; j++) maximum = fmax(maximum, scale * xr[j]);
    float sum = 0.0f;
    for (int j = first; j < visible; j++) {
        const float e = exp(scale * xr[j] - maximum);
        yr[j] = e;
        sum += e;
    }
    const float inverse = visible > first ? 1.0f / sum : 0.0f;
    for (int j = first; j < visible; j++) yr[j] *= inverse;
    for (int j = 0; j < first; j++) yr[j] = 0.0f;
    for (int j = visible; j < cols; j++) yr[j] = 0.0f;
}

// dx = scale · y ⊙ (dy − Σ dy⊙y) per row over the visible entries (causal as above); masked entries 0, their dy
// never read. dx may alias dy.
__kernel void softmax_backward(__global const float* y, __global const float* dy, __global float* dx,
                               const int rows, const int cols, const float scale, const int causal,
                               const int queryLength, const int window, __global const int* starts,
                               const int hasStarts, const int blocksPerSequence)
{
    const int r = get_global_id(0);
    if (r >= rows) return;
    const int visible = visible_count(r, cols, causal, queryLength);
    const int first = first_visible(r, visible, window, starts, hasStarts, queryLength, blocksPerSequence);
    const long base = (long)r * cols;
    float dot = 0.0f;
    for (int j = first; j < visible; j++) dot += dy[base + j] * y[base + j];
    for (int j = first; j < visible; j++) dx[base + j] = scale * y[base + j] * (dy[base + j] - dot);
    for (int j = 0; j < first; j++) dx[base + j] = 0.0f;
    for (int j = visible; j < cols; j++) dx[base + j] = 0.0f;
}

// The same two ops with one work-group per row (for GPUs: a row's entries are spread over the group's work-items,
// which read neighbouring addresses, and the max and sums are local-memory trees, common.cl's group_max and
// group_sum). The host launches rows·group work-items in groups of a power of two at most GROUP_MAX. Results
// match the one-item kernels up to the order of the sums.
__kernel void softmax_forward_group(__global const float* x, __global float* y, const int rows, const int cols,
                                    const float scale, const int causal, const int queryLength, const int window,
                                    __global const int* starts, const int hasStarts, const int blocksPerSequence)
{
    __local float scratch[GROUP_MAX];
    const int r = get_group_id(0), lid = get_local_id(0), size = get_local_size(0);
    const int visible = visible_count(r, cols, causal, queryLength);
    const int first = first_visible(r, visible, window, starts, hasStarts, queryLength, blocksPerSequence);
    __global const float* xr = x + (long)r * cols;
    __global float* yr = y + (long)r * cols;

    float m = -INFINITY;
    for (int j = first + lid; j < visible; j += size) m = fmax(m, scale * xr[j]);
    const float maximum = group_max(m, scratch);
    float s = 0.0f;
    for (int j = first + lid; j < visible; j += size) {
        const float e = exp(scale * xr[j] - maximum);
        yr[j] = e;  // y may alias x: each entry is read and written by the same work-item
        s += e;
    }
    const float sum = group_sum(s, scratch);
    const float inverse = visible > first ? 1.0f / sum : 0.0f;
    for (int j = first + lid; j < visible; j += size) yr[j] *= inverse;
    for (int j = lid; j < first; j += size) yr[j] = 0.0f;
    for (int j = visible + lid; j < cols; j += size) yr[j] = 0.0f;
}

__kernel void softmax_backward_group(__global const float* y, __global const float* dy, __global float* dx,
                                     const int rows, const int cols, const float scale, const int causal,
                                     const int queryLength, const int window, __global const int* starts,
                                     const int hasStarts, const int blocksPerSequence)
{
    __local float scratch[GROUP_MAX];
    const int r = get_group_id(0), lid = get_local_id(0), size = get_local_size(0);
    const int visible = visible_count(r, cols, causal, queryLength);
    const int first = first_visible(r, visible, window, starts, hasStarts, queryLength, blocksPerSequence);
    const long base = (long)r * cols;
    float d = 0.0f;
    for (int j = first + lid; j < visible; j += size) d += dy[base + j] * y[base + j];
    // group_sum's barriers also order every read of dy above before the writes below (dx may alias dy).
    const float dot = group_sum(d, scratch);
    for (int j = first + lid; j < visible; j += size) dx[base + j] = scale * y[base + j] * (dy[base + j] - dot);
    for (int j = lid; j < first; j += size) dx[base + j] = 0.0f;
    for (int j = visible + lid; j < cols; j += size) dx[base + j] = 0.0f;
}
