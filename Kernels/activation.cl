// The activations and their gradients, one work-item per element:
// GPT-2's gelu_new, gelu(x) = x·σ(2u) = 0.5·x·(1 + tanh u), u = √(2/π)·(x + 0.044715·x³);
// Llama's SwiGLU, swiglu(g, u) = silu(g)·u, silu(g) = g·σ(g).

// GELUConstants in Sources/LoRARuntime/Activation.swift (their Swift home).
#define SQRT_TWO_OVER_PI 0.7978845608028654f
#define CUBIC 0.044715f

float gelu_gate(const float x)
{
    const float u = SQRT_TWO_OVER_PI * (x + CUBIC * x * x * x);
    return 1.0f / (1.0f + exp(-2.0f * u));
}

// y = gelu(x); y may alias x.
__kernel void gelu_forward(__global const float* x, __global float* y, const int count)
{
    const int i = get_global_id(0);
    if (i < count) y[i] = x[i] * gelu_gate(x[i]);
}

// dx = dy·gelu′(x) = dy·(s + 2·x·s·(1 − s)·u′), s = σ(2u), u′ = √(2/π)·(1 + 3·0.044715·x²). dx may alias dy.
__kernel void gelu_backward(__global const float* x, __global const float* dy, __global float* dx, const int count)
{
    const int i = get_global_id(0);
    if (i >= count) return;
    const float s = gelu_gate(x[i]);
    // Beyond ±6, s·(1 − s) is exactly 0 in float; clamping keeps u′ finite (0·inf is NaN).
    const float v = clamp(x[i], -20.0f, 20.0f);
    const float du = SQRT_TWO_OVER_PI * (1.0f + 3.0f * CUBIC * v * v);
    dx[i] = dy[i] * (s + 2.0f * v * s * (1.0f - s) * du);
}

// y = (g·σ(g))·u; y may alias gate or up.
__kernel void swiglu_forward(__global const float* gate, __global const float* up, __global float* y, const int count)
{
    const int i = get_global_id(0);
    if (i >= count) return;
    const float g = gate[i];
    y[i] = g * (1.0f / (1.0f + exp(-g))) * up[i];
}

// dGate = dy·u·σ(g)·(1 + g·(1 − σ(g))), dUp = dy·g·σ(g). Each work-item reads its element of every input before
// writing: either output may alias any input.
__kernel void swiglu_backward(__global const float* gate, __global const float* up, __global const float* dy,
                              __global float* dgate, __global float* dup, const int count)
{
    const int i = get_global_id(0);
    if (i >= count) return;
    const float g = gate[i], u = up[i], d = dy[i];
    const float s = 1.0f / (1.0f + exp(-g));
    dgate[i] = d * u * s * (1.0f + g * (1.0f - s));
    dup[i] = d * (g * s);
}
