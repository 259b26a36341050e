// Layer normalization and RMS normalization over the last axis of x [rows, cols] and their gradients (layer norm:
// biased variance, eps inside the square root, as PyTorch; RMS norm: Llama's, y = (x·rstd)·gamma with
// rstd = 1/√(mean(x²) + eps)). Forward and dx: one work-group per row. dgamma/dbeta: one work-item per column,
// summing over rows in order (neighbouring work-items read neighbouring addresses).

// y = (x − mean)·rstd·gamma + beta; mean and rstd [rows] written when write_stats. y may alias x.
__kernel void layernorm_forward(__global const float* x, __global const float* gamma, __global const float* beta,
                                __global float* y, __global float* mean_out, __global float* rstd_out,
                                const int write_stats, const int cols, const float eps)
{
    __local float scratch[GROUP_MAX];
    const int row = get_group_id(0), lid = get_local_id(0), size = get_local_size(0);
    __global const float* xr = x + (long)row * cols;
    __global float* yr = y + (long)row * cols;

    float s = 0.0f;
    for (int j = lid; j < cols; j += size) s += xr[j];
    const float mean = group_sum(s, scratch) / cols;
    float q = 0.0f;
    for (int j = lid; j < cols; j += size) { const float d = xr[j] - mean; q += d * d; }
    const float rstd = 1.0f / sqrt(group_sum(q, scratch) / cols + eps);
    for (int j = lid; j < cols; j += size) yr[j] = (xr[j] - mean) * rstd * gamma[j] + beta[j];
    if (write_stats && lid == 0) { mean_out[row] = mean; rstd_out[row] = rstd; }
}

// dx = rstd·(g − mean(g) − x̂·mean(g·x̂)), g = dy·gamma, x̂ = (x − mean)·rstd; written, or added when accumulate.
// dx may alias dy when not accumulating (each element is read and written by the same work-item).
__kernel void layernorm_backward_dx(__global const float* x, __global const float* gamma, __global const float* mean,
                                    __global const float* rstd, __global const float* dy, __global float* dx,
                                    const int accumulate, const int cols)
{
    __local float scratch[GROUP_MAX];
    const int row = get_group_id(0), lid = get_local_id(0), size = get_local_size(0);
    const long base = (long)row * cols;
    const float m = mean[row], rs = rstd[row];
    float sg = 0.0f, sgx = 0.0f;
    for (int j = lid; j < cols; j += size) {
        const float g = dy[base + j] * gamma[j];
        sg += g;
        sgx += g * (x[base + j] - m) * rs;
    }
    const float mean_g = group_sum(sg, scratch) / cols;
    const float mean_gx = group_sum(sgx, scratch) / cols;
    for (int j = lid; j < cols; j += size) {
        const float xhat = (x[base + j] - m) * rs;
        const float d = rs * (dy[base + j] * gamma[j] - mean_g - xhat * mean_gx);
        dx[base + j] = accumulate ? dx[base + j] + d : d;
    }
}

// dgamma[col] += Σ_rows dy·x̂ and dbeta[col] += Σ_rows dy (each when its flag is set). Runs before
// layernorm_backward_dx, which may overwrite dy.
__kernel void layernorm_backward_parameters(__global const float* x, __global const float* mean,
                                            __global const float* rstd, __global const float* dy,
                                            __global float* dgamma, __global float* dbeta,
                                            const int want_gamma, const int want_beta, const int rows, const int cols)
{
    const int col = get_global_id(0);
    if (col >= cols) return;
    float sg = 0.0f, sb = 0.0f;
    for (int r = 0; r < rows; r++) {
        const long i = (long)r * cols + col;
        sg += dy[i] * (x[i] - mean[r]) * rstd[r];
        sb += dy[i];
    }
    if (want_gamma) dgamma[col] += sg;
    if (want_beta) dbeta[col] += sb;
}

// y = (x·rstd)·gamma, rstd = 1/√(mean(x²) + eps); rstd [rows] written when write_rstd. y may alias x.
__kernel void rmsnorm_forward(__global const float* x, __global const float* gamma, __global float* y,
                              __global float* rstd_out, const int write_rstd, const int cols, const float eps)
{
    __local float scratch[GROUP_MAX];
    const int row = get_group_id(0), lid = get_local_id(0), size = get_local_size(0);
    __global const float* xr = x + (long)row * cols;
    __global float* yr = y + (long)row * cols;

    float q = 0.0f;
    for (int j = lid; j < cols; j += size) q += xr[j] * xr[j];
    const float rstd = 1.0f / sqrt(group_sum(q, scratch) / cols + eps);
    for (int j = lid; j < cols; j += size) yr[j] = xr[j] * rstd * gamma[j];
    if (write_rstd && lid == 0) rstd_out[row] = rstd;
}

// dx = rstd·(g − x̂·mean(g·x̂)), g = dy·gamma, x̂ = x·rstd; written, or added when accumulate.
// dx may alias dy when not accumulating (each element is read and written by the same work-item).
__kernel void rmsnorm_backward_dx(__global const float* x, __global const float* gamma, __global const float* rstd,
                                  __global const float* dy, __global float* dx, const int accumulate, const int cols)
{
    __local float scratch[GROUP_MAX];
    const int row = get_group_id(0), lid = get_local_id(0), size = get_local_size(0);
    const long base = (long)row * cols;
    const float rs = rstd[row];
    float sgx = 0.0f;
    for (int j = lid; j < cols; j += size) sgx += dy[base + j] * gamma[j] * x[base + j] * rs;
    const float mean_gx = group_sum(sgx, scratch) / cols;
    for (int j = lid; j < cols; j += size) {
        const float d = rs * (dy[base + j] * gamma[j] - x[base + j] * rs * mean_gx);
        dx[base + j] = accumulate ? dx[base + j] + d : d;
    }
}

// dgamma[col] += Σ_rows dy·x·rstd. Runs before rmsnorm_backward_dx, which may overwrite dy.
__kernel void rmsnorm_backward_gamma(__global const float* x, __global const float* rstd, __global const float* dy,
                                     __global float* dgamma, const int rows, const int cols)
{
    const int col = get_global_id(0);
    if (col >= cols) return;
    float sg = 0.0f;
    for (int r = 0; r < rows; r++) {
        const long i = (long)r * cols + col;
        sg += dy[i] * x[i] * rstd[r];
    }
    dgamma[col] += sg;
}
