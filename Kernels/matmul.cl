// GEMM: C = alpha·op(A)·op(B) + beta·C, row-major, batched with strides (BLAS semantics: beta = 0 never
// reads C). Element (i, j) of batch b of an operand lives at offset + b·stride + i·ld + j.
//
// Two launches. pack_b copies op(B) into strips of TN columns, each strip k rows of TN contiguous floats,
// zero-padded past n: the main loop then reads B sequentially whatever its layout (a row-major B read down a
// strip jumps ld floats per step, which defeats a CPU's prefetchers), and transposes and edges of B are gone.
// gemm: each work-item computes a TM×TN block of C in TM·TN/VW accumulators of VW floats. Dim 0 walks rows, so
// neighbouring work-items share one B strip (cache reuse on CPUs such as PoCL); dim 1 = strip; dim 2 = batch.
// No local memory and no barriers (slow on CPU devices).
// Tunables (TM, TN, VW here; the work-group size along dim 0 is the host's): the host passes them with -D, from
// `lora tune`'s cache for the device or from its per-device-kind defaults (KernelParameters.swift holds the legal
// values and the rules between them); the #defines below are the CPU defaults, so the file also compiles alone.
// Typed operands: A and B may each be float32, bfloat16 or float16 (A_TYPE, B_TYPE: common.cl's dtype codes); they are
// widened to float as they are read (B once, by pack_b), and the math and C are float32.

#ifndef TM
#define TM 12       // rows of C per work-item: 1..16
#endif
#ifndef TN
#define TN 32       // columns of C per work-item: 8..64, a multiple of VW (TM·TN floats must fit in registers)
#endif
#ifndef VW
#define VW 16       // floats per accumulator vector: 4, 8 or 16 (a divisor of TN)
#endif
#define VN (TN / VW)
#define floatV TYPED_CAT(float, VW)
#define VLOAD TYPED_CAT(vload, VW)
#define VSTORE TYPED_CAT(vstore, VW)
#ifndef TRANS_A
#define TRANS_A 0   // 1: A is stored [k, m] and used transposed
#endif
#ifndef TRANS_B
#define TRANS_B 0   // 1: B is stored [n, k] and used transposed
#endif
#ifndef A_TYPE
#define A_TYPE 0    // A's dtype code (common.cl): 0 float32, 1 bfloat16, 2 float16
#endif
#ifndef B_TYPE
#define B_TYPE 0    // B's dtype code, as A_TYPE
#endif

#if TRANS_A
#define A_AT(i, p) TYPED_LOAD(A_TYPE, A, (long)(p) * lda + (i))
#else
#define A_AT(i, p) TYPED_LOAD(A_TYPE, A, (long)(i) * lda + (p))
#endif
#if TRANS_B
#define B_AT(p, j) TYPED_LOAD(B_TYPE, B, (long)(j) * ldb + (p))
#else
#define B_AT(p, j) TYPED_LOAD(B_TYPE, B, (long)(p) * ldb + (j))
#endif

// packed[batch][strip][p][c] = op(B)[p, strip·TN + c], 0 past n. Global: (strips·TN, k, batches).
__kernel void pack_b(const int n, const int k, __global const TYPED_ELEM(B_TYPE)* B, const int offB, const int ldb,
                     const int strideB, __global float* packed)
{
    const int j = get_global_id(0), p = get_global_id(1), batch = get_global_id(2);
    const int strips = get_global_size(0) / TN;
    B += offB + (long)batch * strideB;
    const long at = (((long)batch * strips + j / TN) * k + p) * TN + j % TN;
    packed[at] = j < n ? B_AT(p, j) : 0.0f;
}

// packedStride: floats between batches of the packed B (0 when every batch shares one B). With hasBias,
// bias[j] is added to column j of every row as C is stored (a linear layer's bias, without a pass of its own).
// triangle (GEMM.Triangle, causal attention): 0 none; 1 only C's entries j <= i + offset are wanted (a block
// wholly above that is skipped); 2 op(A)[i, p] = 0 for p > i + offset; 3 op(A)[i, p] = 0 for p < i - offset
// (2 and 3: the block runs only the terms its rows need).
__kernel void gemm(const int m, const int n, const int k, const float alpha,
                   __global const TYPED_ELEM(A_TYPE)* A, const int offA, const int lda, const int strideA,
                   __global const float* packed, const long packedStride,
                   const float beta,
                   __global float* C, const int offC, const int ldc, const int strideC,
                   const int triangle, const int offset, __global const float* bias, const int hasBias)
{
    const int i0 = get_global_id(0) * TM;
    const int strip = get_global_id(1), j0 = strip * TN;
    const int batch = get_global_id(2);
    if (i0 >= m) return;
    const int lastRow = min(i0 + TM, m) - 1;
    if (triangle == 1 && j0 > lastRow + offset) return;
    const int pBegin = triangle == 3 ? clamp(i0 - offset, 0, k) : 0;
    const int pEnd = triangle == 2 ? clamp(lastRow + 1 + offset, 0, k) : k;
    A += offA + (long)batch * strideA;
    C += offC + (long)batch * strideC;
    __global const float* Bs = packed + batch * packedStride + (long)strip * k * TN;

    floatV acc[TM][VN];
    #pragma unroll
    for (int t = 0; t < TM; t++)
        #pragma unroll
        for (int q = 0; q < VN; q++) acc[t][q] = (floatV)(0.0f);

    const int rows = min(TM, m - i0);
    if (rows == TM) {
        for (int p = pBegin; p < pEnd; p++) {
            floatV b[VN];
            #pragma unroll
            for (int q = 0; q < VN; q++) b[q] = VLOAD(q, Bs + p * TN);
            #pragma unroll
            for (int t = 0; t < TM; t++) {
                const floatV a = (floatV)(A_AT(i0 + t, p));
                #pragma unroll
                for (int q = 0; q < VN; q++) acc[t][q] = fma(a, b[q], acc[t][q]);
            }
        }
    } else {
        for (int p = pBegin; p < pEnd; p++) {
            floatV b[VN];
            #pragma unroll
            for (int q = 0; q < VN; q++) b[q] = VLOAD(q, Bs + p * TN);
            #pragma unroll
            for (int t = 0; t < TM; t++) {
                const floatV a = (floatV)(t < rows ? A_AT(i0 + t, p) : 0.0f);
                #pragma unroll
                for (int q = 0; q < VN; q++) acc[t][q] = fma(a, b[q], acc[t][q]);
            }
        }
    }

    const int cols = min(TN, n - j0);
    for (int t = 0; t < rows; t++) {
        __global float* c = C + (long)(i0 + t) * ldc + j0;
        if (cols == TN) {
            #pragma unroll
            for (int q = 0; q < VN; q++) {
                const floatV prior = beta == 0.0f ? (floatV)(0.0f) : beta * VLOAD(q, c);
                const floatV shift = hasBias ? VLOAD(q, bias + j0) : (floatV)(0.0f);
                VSTORE(alpha * acc[t][q] + prior + shift, q, c);
            }
        } else {
            float out[TN];
            #pragma unroll
            for (int q = 0; q < VN; q++) VSTORE(acc[t][q], q, out);
            for (int j = 0; j < cols; j++)
                c[j] = alpha * out[j] + (beta == 0.0f ? 0.0f : beta * c[j]) + (hasBias ? bias[j0 + j] : 0.0f);
        }
    }
}
