// Convert: dst[i] = src[i] between float dtypes, one work-item per element. SRC_TYPE and DST_TYPE are common.cl's
// dtype codes (0 float32, 1 bfloat16, 2 float16); the value passes through float, which holds every bfloat16 and
// float16 exactly, so each element is rounded once.

#ifndef SRC_TYPE
#define SRC_TYPE 0  // source dtype code: 0, 1 or 2
#endif
#ifndef DST_TYPE
#define DST_TYPE 1  // destination dtype code: 0, 1 or 2
#endif

__kernel void convert(__global const TYPED_ELEM(SRC_TYPE)* src, __global TYPED_ELEM(DST_TYPE)* dst, const int count)
{
    const int i = get_global_id(0);
    if (i >= count) return;
    TYPED_STORE(DST_TYPE, dst, i, TYPED_LOAD(SRC_TYPE, src, i));
}
