// Helpers every kernel file may use: the host puts this file in front of each program's source.
// Work-group reductions in a fixed tree order (results repeat run to run). Kernels that use them run with a
// power-of-two work-group of at most GROUP_MAX items and pass a __local float[GROUP_MAX] scratch.

#ifndef GROUP_MAX
#define GROUP_MAX 256  // largest reduction work-group: a power of two, 1..1024 (4·GROUP_MAX bytes of local memory)
#endif

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

// Typed storage (LoRARuntime's DType). A kernel that takes 16-bit floats gets each operand's dtype as a -D code:
// 0 float32, 1 bfloat16 (stored as ushort; widened by a shift, narrowed with integer rounding to nearest even),
// 2 float16 (half, read with vload_half and written with vstore_half_rte, which need no cl_khr_fp16).
// TYPED_ELEM(code) is the storage type; TYPED_LOAD reads element i as a float (exact); TYPED_STORE writes float v
// rounded to nearest even (NaN stays NaN).
#define TYPED_CAT_(a, b) a##b
#define TYPED_CAT(a, b) TYPED_CAT_(a, b)
#define TYPED_ELEM_0 float
#define TYPED_ELEM_1 ushort
#define TYPED_ELEM_2 half
#define TYPED_LOAD_0(p, i) ((p)[i])
#define TYPED_LOAD_1(p, i) bf16_to_float((p)[i])
#define TYPED_LOAD_2(p, i) vload_half((i), (p))
#define TYPED_STORE_0(p, i, v) ((p)[i] = (v))
#define TYPED_STORE_1(p, i, v) ((p)[i] = float_to_bf16(v))
#define TYPED_STORE_2(p, i, v) vstore_half_rte((v), (i), (p))
#define TYPED_ELEM(code) TYPED_CAT(TYPED_ELEM_, code)
#define TYPED_LOAD(code, p, i) TYPED_CAT(TYPED_LOAD_, code)(p, i)
#define TYPED_STORE(code, p, i, v) TYPED_CAT(TYPED_STORE_, code)(p, i, v)

float bf16_to_float(const ushort bits) { return as_float((uint)bits << 16); }

// Rounds to nearest even on the bits (no float arithmetic, so a device that flushes subnormals still rounds
// them exactly); a NaN keeps its sign and gets the quiet bit.
ushort float_to_bf16(const float v)
{
    const uint bits = as_uint(v);
    if ((bits & 0x7FFFFFFFu) > 0x7F800000u) return (ushort)((bits >> 16) | 0x0040u);
    return (ushort)((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
}
