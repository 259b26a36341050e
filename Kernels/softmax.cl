// Softmax over the last axis of x [rows, cols], with a scale and an optional causal mask, and its gradient.
// One work-item per row: rows are many (batch·heads·T) and no local memory or barriers are needed.
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
