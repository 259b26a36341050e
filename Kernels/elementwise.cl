// Elementwise ops over flat buffers. One work-item per element.

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
