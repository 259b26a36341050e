// GEMM: C = alpha·op(A)·op(B) + beta·C, row-major, batched with strides (BLAS semantics: beta = 0 never
// reads C). Element (i, j) of batch b of an operand lives at offset + b·stride + i·ld + j.
//
// Register blocking: each work-item computes a TM×16 block of C, holding TM float16 accumulators.
// Global size: dim 0 = ceil(m / TM) walks rows, so neighbouring work-items share the same 16-column strip
// of B (cache reuse on CPUs such as PoCL); dim 1 = ceil(n / 16); dim 2 = batch.
// Interior blocks with an untransposed B load each B strip with one vload16; edge blocks and transposed B
// gather scalars with bounds checks. No local memory and no barriers (they are slow on CPU devices).

#ifndef TM
#define TM 8        // rows of C per work-item, 1..16: more rows reuse each B strip more, at more registers
#endif
#ifndef TRANS_A
#define TRANS_A 0   // 1: A is stored [k, m] and used transposed
#endif
#ifndef TRANS_B
#define TRANS_B 0   // 1: B is stored [n, k] and used transposed
#endif

#if TRANS_A
#define A_AT(i, p) A[(p) * lda + (i)]
#else
#define A_AT(i, p) A[(i) * lda + (p)]
#endif
#if TRANS_B
#define B_AT(p, j) B[(j) * ldb + (p)]
#else
#define B_AT(p, j) B[(p) * ldb + (j)]
#endif

__kernel void gemm(const int m, const int n, const int k, const float alpha,
                   __global const float* A, const int offA, const int lda, const int strideA,
                   __global const float* B, const int offB, const int ldb, const int strideB,
                   const float beta,
                   __global float* C, const int offC, const int ldc, const int strideC)
{
    const int i0 = get_global_id(0) * TM;
    const int j0 = get_global_id(1) * 16;
    const int batch = get_global_id(2);
    if (i0 >= m || j0 >= n) return;
    A += offA + batch * strideA;
    B += offB + batch * strideB;
    C += offC + batch * strideC;

    float16 acc[TM];
    #pragma unroll
    for (int t = 0; t < TM; t++) acc[t] = (float16)(0.0f);

    const int rows = min(TM, m - i0);
    const int cols = min(16, n - j0);
#if TRANS_B
    const bool interior = false;  // a transposed B strip is strided: always gather
#else
    const bool interior = rows == TM && cols == 16;
#endif
    if (interior) {
        for (int p = 0; p < k; p++) {
            const float16 b = vload16(0, B + p * ldb + j0);
            #pragma unroll
            for (int t = 0; t < TM; t++) acc[t] += A_AT(i0 + t, p) * b;
        }
    } else {
        float strip[16];
        for (int p = 0; p < k; p++) {
            for (int c = 0; c < 16; c++) strip[c] = c < cols ? B_AT(p, j0 + c) : 0.0f;
            const float16 b = vload16(0, strip);
            #pragma unroll
            for (int t = 0; t < TM; t++) acc[t] += (t < rows ? A_AT(i0 + t, p) : 0.0f) * b;
        }
    }

    for (int t = 0; t < rows; t++) {
        __global float* c = C + (i0 + t) * ldc + j0;
        if (cols == 16) {
            const float16 prior = beta == 0.0f ? (float16)(0.0f) : beta * vload16(0, c);
            vstore16(alpha * acc[t] + prior, 0, c);
        } else {
            float out[16];
            vstore16(acc[t], 0, out);
            for (int j = 0; j < cols; j++) c[j] = alpha * out[j] + (beta == 0.0f ? 0.0f : beta * c[j]);
        }
    }
}
