// The fused AdamW update, one work-item per element, in torch.optim.AdamW's order of operations:
//   g = grad·grad_scale; p *= decay; m = lerp(m, g, weight); v = β₂·v + (1 − β₂)·g²;
//   p −= step_size · m / (√v / correction + eps)
// with decay = 1 − lr·wd, weight = 1 − β₁, step_size = lr/(1 − β₁ᵗ), correction = √(1 − β₂ᵗ) from the host
// (LoRARuntime's AdamW computes them in Double, as PyTorch does).
__kernel void adamw(__global float* p, __global const float* grad, __global float* m, __global float* v,
                    const float grad_scale, const float decay, const float weight, const float beta2,
                    const float second_weight, const float correction, const float eps, const float step_size,
                    const int count)
{
    const int i = get_global_id(0);
    if (i >= count) return;
    const float g = grad[i] * grad_scale;
    const float mi = m[i];
    // torch's lerp: the form depends on whether the weight is below one half.
    const float new_m = weight < 0.5f ? mi + weight * (g - mi) : g - (g - mi) * (1.0f - weight);
    const float new_v = v[i] * beta2 + second_weight * g * g;
    p[i] = p[i] * decay - step_size * (new_m / (sqrt(new_v) / correction + eps));
    m[i] = new_m;
    v[i] = new_v;
}
