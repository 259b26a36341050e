// NF4 (QLoRA's 4-bit NormalFloat, bitsandbytes' layout; NF4.swift states it): a GEMM that dequantizes W as it
// reads it, and a full dequantization.
//
// W [rows, columns] is flattened row-major and cut into blocks of 2^BLOCK_SHIFT elements (a block may span rows);
// element e is map[q]·absmax[e >> BLOCK_SHIFT], q its nibble: byte e/2, the high nibble for even e. With
// DOUBLE_QUANT, absmax[b] = nestedMap[absmaxCodes[b]]·scales[b / nestedBlocksize] + offset, the product rounded
// before the add. Both must be bit-exact with the CPU: FP_CONTRACT is off in this file (no a·b+c fused behind our
// back), and the absmax product also passes through `opaque` (a runtime 0 OR-ed into its bits), so a driver that
// ignored the pragma still has to round it. map[q]·absmax is a lone multiply (rounded once wherever it runs).
// ROUND_TYPE (common.cl's dtype code) rounds each dequantized element to bfloat16 or float16 and widens it back, as
// bitsandbytes' dequantize_4bit does for a weight of that quant_state dtype; 0 (float32) compiles to nothing.
//
// nf4_gemm: C[m, n] = alpha·A·op(W) + beta·C (+ bias[n]), A row-major [m, k]. TRANS_W: op(W) = Wᵀ with W [n, k]
// (a linear layer's forward); else W is [k, n] (its input gradient). A work-group computes a TM×TN tile of C, each
// work-item RM×RN of it (rows ty + i·(TM/RM), columns tx + j·(TN/RN)). Per step of TK terms it loads into local
// memory A's TM×TK tile, the W tile's packed nibbles and the absmax of every block the tile touches, then
// dequantizes the tile into a float TK×TN tile there (each element once per work-group), then multiply-adds.
// The tile's W "lines" are its stretches of W rows: TN lines of TK elements (TRANS_W) or TK lines of TN.
// nf4_gemm_strips (below) computes the same for CPU devices, with one-item work-groups.

#pragma OPENCL FP_CONTRACT OFF

#ifndef TRANS_W
#define TRANS_W 1       // 1: W is [n, k] and used transposed; 0: W is [k, n]
#endif
#ifndef BLOCK_SHIFT
#define BLOCK_SHIFT 6   // log2 of the blocksize (6: bitsandbytes' default 64)
#endif
#ifndef DOUBLE_QUANT
#define DOUBLE_QUANT 1  // 1: absmax stored as 8-bit codes (double quantization); 0: float32
#endif
#ifndef ROUND_TYPE
#define ROUND_TYPE 0    // dtype dequantized elements are rounded to: 0 float32 (none), 1 bfloat16, 2 float16
#endif
#ifndef TM
#define TM 64           // rows of C per work-group
#endif
#ifndef TN
#define TN 64           // columns of C per work-group
#endif
#ifndef TK
#define TK 16           // terms per local-memory step
#endif
#ifndef RM
#define RM 4            // rows of C per work-item (TM / RM work-items down)
#endif
#ifndef RN
#define RN 4            // columns of C per work-item (TN / RN work-items across)
#endif

#define WM (TM / RM)
#define WN (TN / RN)
#define ITEMS (WM * WN)
#if TRANS_W
#define LINES TN
#define SEG TK
#else
#define LINES TK
#define SEG TN
#endif
// Bytes and blocks one line can touch: its SEG elements may start on a low nibble and cross block edges.
#define LINE_BYTES (SEG / 2 + 1)
#define LINE_BLOCKS ((SEG - 1) / (1 << BLOCK_SHIFT) + 2)

// Block b's absmax (see the header). absmax is float32 [blocks], or with DOUBLE_QUANT the nested scales.
float nf4_absmax(const int b, __global const float* absmax, __global const uchar* absmaxCodes,
                 __global const float* nestedMap, const float offset, const int nestedBlocksize, const uint opaque)
{
#if DOUBLE_QUANT
    const float scaled = nestedMap[absmaxCodes[b]] * absmax[b / nestedBlocksize];
    return as_float(as_uint(scaled) | opaque) + offset;
#else
    return absmax[b];
#endif
}

// v rounded to ROUND_TYPE (to nearest even, as common.cl's TYPED_STORE) and widened back (exact).
float nf4_round(const float v)
{
#if ROUND_TYPE == 1
    return bf16_to_float(float_to_bf16(v));
#elif ROUND_TYPE == 2
    ushort bits;
    vstore_half_rte(v, 0, (__private half*)&bits);
    return vload_half(0, (__private const half*)&bits);
#else
    return v;
#endif
}

// The first element of line l of the tile at (p0, j0), and how many of its SEG elements exist (0: none).
long nf4_line_start(const int l, const int p0, const int j0, const int n, const int k, int* length)
{
#if TRANS_W
    *length = j0 + l < n ? min(SEG, k - p0) : 0;
    return (long)(j0 + l) * k + p0;
#else
    *length = p0 + l < k ? min(SEG, n - j0) : 0;
    return (long)(p0 + l) * n + j0;
#endif
}

// Global: (ceil(n / TN)·WN, ceil(m / TM)·WM); local: (WN, WM).
__kernel __attribute__((reqd_work_group_size(WN, WM, 1)))
void nf4_gemm(const int m, const int n, const int k, const float alpha, const float beta,
              __global const float* A, __global float* C, __global const float* bias, const int hasBias,
              __global const uchar* codes, __global const float* map,
              __global const float* absmax, __global const uchar* absmaxCodes, __global const float* nestedMap,
              const float offset, const int nestedBlocksize, const int blockCount, const uint opaque)
{
    __local float lA[TK][TM + 1];
    __local float lB[TK][TN];
    __local uchar lQ[LINES][LINE_BYTES];
    __local float lS[LINES][LINE_BLOCKS];
    __local float lMap[16];

    const int tx = get_local_id(0), ty = get_local_id(1), lid = ty * WN + tx;
    const int j0 = get_group_id(0) * TN, i0 = get_group_id(1) * TM;
    const long byteCount = ((long)n * k + 1) / 2;  // W has n·k elements either way
    if (lid < 16) lMap[lid] = map[lid];

    float acc[RM][RN];
    for (int i = 0; i < RM; i++)
        for (int j = 0; j < RN; j++) acc[i][j] = 0.0f;

    for (int p0 = 0; p0 < k; p0 += TK) {
        // A's tile, transposed (lA[p][row]); zero past m and k.
        for (int idx = lid; idx < TM * TK; idx += ITEMS) {
            const int r = idx / TK, p = idx % TK;
            lA[p][r] = i0 + r < m && p0 + p < k ? A[(long)(i0 + r) * k + p0 + p] : 0.0f;
        }
        // The bytes of each line, from the one holding its first element.
        for (int idx = lid; idx < LINES * LINE_BYTES; idx += ITEMS) {
            const int l = idx / LINE_BYTES, b = idx % LINE_BYTES;
            int length;
            const long at = (nf4_line_start(l, p0, j0, n, k, &length) >> 1) + b;
            lQ[l][b] = length > 0 && at < byteCount ? codes[at] : (uchar)0;
        }
        // The absmax of each block a line touches, from the block of its first element.
        for (int idx = lid; idx < LINES * LINE_BLOCKS; idx += ITEMS) {
            const int l = idx / LINE_BLOCKS, s = idx % LINE_BLOCKS;
            int length;
            const long block = (nf4_line_start(l, p0, j0, n, k, &length) >> BLOCK_SHIFT) + s;
            lS[l][s] = length > 0 && block < blockCount
                ? nf4_absmax((int)block, absmax, absmaxCodes, nestedMap, offset, nestedBlocksize, opaque) : 0.0f;
        }
        barrier(CLK_LOCAL_MEM_FENCE);

        // Dequantize: lB[p][j] = op(W)[p0 + p, j0 + j], zero outside W.
        for (int idx = lid; idx < TK * TN; idx += ITEMS) {
            const int p = idx / TN, j = idx % TN;
#if TRANS_W
            const int l = j, along = p;
#else
            const int l = p, along = j;
#endif
            int length;
            const long start = nf4_line_start(l, p0, j0, n, k, &length), e = start + along;
            const uchar byte = lQ[l][(e >> 1) - (start >> 1)];
            const float scale = lS[l][(e >> BLOCK_SHIFT) - (start >> BLOCK_SHIFT)];
            lB[p][j] = along < length ? nf4_round(lMap[(e & 1) ? (byte & 15) : (byte >> 4)] * scale) : 0.0f;
        }
        barrier(CLK_LOCAL_MEM_FENCE);

        for (int p = 0; p < TK; p++) {
            float a[RM], b[RN];
            for (int i = 0; i < RM; i++) a[i] = lA[p][ty + i * WM];
            for (int j = 0; j < RN; j++) b[j] = lB[p][tx + j * WN];
            for (int i = 0; i < RM; i++)
                for (int j = 0; j < RN; j++) acc[i][j] = fma(a[i], b[j], acc[i][j]);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }

    for (int i = 0; i < RM; i++) {
        const int row = i0 + ty + i * WM;
        if (row >= m) break;
        for (int j = 0; j < RN; j++) {
            const int col = j0 + tx + j * WN;
            if (col >= n) break;
            __global float* c = C + (long)row * n + col;
            const float prior = beta == 0.0f ? 0.0f : beta * *c;
            *c = alpha * acc[i][j] + prior + (hasBias ? bias[col] : 0.0f);
        }
    }
}

#ifndef SM
#define SM 12           // nf4_gemm_strips: rows of C per register tile (SM·2 float16 accumulators)
#endif
#ifndef KC
#define KC 256          // nf4_gemm_strips: terms per dequantized panel (KC·32 floats of local memory)
#endif

// Elements first..first+count-1 of W, dequantized into dst[i·stride].
void nf4_decode_run(const long first, const int count, __local float* dst, const int stride,
                    __global const uchar* codes, __local const float* lMap,
                    __global const float* absmax, __global const uchar* absmaxCodes, __global const float* nestedMap,
                    const float offset, const int nestedBlocksize, const uint opaque)
{
    int i = 0;
    while (i < count) {
        const long e0 = first + i, block = e0 >> BLOCK_SHIFT;
        const int stop = (int)min((long)count, ((block + 1) << BLOCK_SHIFT) - first);
        const float scale = nf4_absmax((int)block, absmax, absmaxCodes, nestedMap, offset, nestedBlocksize, opaque);
        for (; i < stop; i++) {
            const long e = first + i;
            const uchar byte = codes[e >> 1];
            dst[i * stride] = nf4_round(lMap[(e & 1) ? (byte & 15) : (byte >> 4)] * scale);
        }
    }
}

// nf4_gemm_strips, for CPU devices (a work-group of many items with barriers runs there as loops over its items,
// each item's accumulators spilled between barriers: ~5 GFLOP/s on PoCL): the same product with one-item
// work-groups, as matmul.cl's gemm. Item (s, r) owns C's columns 32s..32s+31 and rows r·rowsPerItem onward; per
// KC terms it dequantizes op(W)'s KC×32 panel into local memory once, then runs SM×32 register tiles down its rows
// (A read in place). Dequantization is repeated once per row range only. Global: (ceil(n / 32), rowItems).
__kernel __attribute__((reqd_work_group_size(1, 1, 1)))
void nf4_gemm_strips(const int m, const int n, const int k, const float alpha, const float beta,
                     __global const float* A, __global float* C, __global const float* bias, const int hasBias,
                     __global const uchar* codes, __global const float* map,
                     __global const float* absmax, __global const uchar* absmaxCodes, __global const float* nestedMap,
                     const float offset, const int nestedBlocksize, const uint opaque, const int rowsPerItem)
{
    __local float panel[KC * 32];
    __local float lMap[16];
    for (int q = 0; q < 16; q++) lMap[q] = map[q];
    const int j0 = get_global_id(0) * 32, cols = min(32, n - j0);
    const int rowBegin = get_global_id(1) * rowsPerItem, rowEnd = min(m, rowBegin + rowsPerItem);
    if (rowBegin >= rowEnd) return;

    for (int p0 = 0; p0 < k; p0 += KC) {
        const int kc = min(KC, k - p0);
#if TRANS_W
        // Column j of the panel is a stretch of W's row j0 + j.
        for (int j = 0; j < 32; j++) {
            if (j < cols) {
                nf4_decode_run((long)(j0 + j) * k + p0, kc, panel + j, 32, codes, lMap, absmax, absmaxCodes, nestedMap,
                               offset, nestedBlocksize, opaque);
            } else {
                for (int p = 0; p < kc; p++) panel[p * 32 + j] = 0.0f;
            }
        }
#else
        // Row p of the panel is a stretch of W's row p0 + p.
        for (int p = 0; p < kc; p++) {
            nf4_decode_run((long)(p0 + p) * n + j0, cols, panel + p * 32, 1, codes, lMap, absmax, absmaxCodes, nestedMap,
                           offset, nestedBlocksize, opaque);
            for (int j = cols; j < 32; j++) panel[p * 32 + j] = 0.0f;
        }
#endif
        for (int i0 = rowBegin; i0 < rowEnd; i0 += SM) {
            const int rows = min(SM, rowEnd - i0);
            float16 acc[SM][2];
            for (int t = 0; t < SM; t++) acc[t][0] = acc[t][1] = (float16)(0.0f);
            __global const float* a = A + (long)i0 * k + p0;
            for (int p = 0; p < kc; p++) {
                const float16 b0 = vload16(0, panel + p * 32), b1 = vload16(1, panel + p * 32);
                #pragma unroll
                for (int t = 0; t < SM; t++) {
                    const float16 x = (float16)(t < rows ? a[(long)t * k + p] : 0.0f);
                    acc[t][0] = fma(x, b0, acc[t][0]);
                    acc[t][1] = fma(x, b1, acc[t][1]);
                }
            }
            // beta and the bias apply in the first panel of k; later panels add to C.
            for (int t = 0; t < rows; t++) {
                float out[32];
                vstore16(acc[t][0], 0, out);
                vstore16(acc[t][1], 1, out);
                __global float* c = C + (long)(i0 + t) * n + j0;
                for (int j = 0; j < cols; j++) {
                    const float prior = p0 > 0 ? c[j] : beta == 0.0f ? 0.0f : beta * c[j];
                    c[j] = alpha * out[j] + prior + (p0 == 0 && hasBias ? bias[j0 + j] : 0.0f);
                }
            }
        }
    }
}

// dst[e] = W's element e, one work-item per element. Global: (count).
__kernel void nf4_dequantize(const long count, __global const uchar* codes, __global const float* map,
                             __global const float* absmax, __global const uchar* absmaxCodes,
                             __global const float* nestedMap, const float offset, const int nestedBlocksize,
                             const uint opaque, __global float* dst)
{
    const long e = get_global_id(0);
    if (e >= count) return;
    const uchar byte = codes[e >> 1];
    const float scale = nf4_absmax((int)(e >> BLOCK_SHIFT), absmax, absmaxCodes, nestedMap, offset, nestedBlocksize, opaque);
    dst[e] = nf4_round(map[(e & 1) ? (byte & 15) : (byte >> 4)] * scale);
}
