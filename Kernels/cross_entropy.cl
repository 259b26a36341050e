// Cross-entropy of logits [rows, classes] against int32 class ids [rows], fused with softmax and its gradient.
// One work-group per row. A negative target is ignored (loss 0, gradient 0); a target at or above `classes` gives
// NaN, which the host's NaN guard reports.

// losses[row] = log Σ exp(l − max) + max − l[target]; when write_grad,
// dlogits[row] = scale·(softmax − onehot). dlogits may alias logits.
__kernel void cross_entropy(__global const float* logits, __global const int* targets, __global float* losses,
                            __global float* dlogits, const int write_grad, const int classes, const float scale)
{
    __local float scratch[GROUP_MAX];
    const int row = get_group_id(0), lid = get_local_id(0), size = get_local_size(0);
    __global const float* lr = logits + (long)row * classes;
    __global float* gr = dlogits + (long)row * classes;
    const int target = targets[row];

    if (target < 0 || target >= classes) {
        const float fill = target < 0 ? 0.0f : NAN;
        if (lid == 0) losses[row] = fill;
        if (write_grad) for (int j = lid; j < classes; j += size) gr[j] = fill;
        return;
    }
    const int t = target;
    const float target_logit = lr[t];  // read before any work-item writes the gradient over the logits
    float m = -INFINITY;
    for (int j = lid; j < classes; j += size) m = fmax(m, lr[j]);
    const float largest = group_max(m, scratch);
    float s = 0.0f;
    for (int j = lid; j < classes; j += size) s += exp(lr[j] - largest);
    const float sum = group_sum(s, scratch);  // its barriers also order every read above before the writes below
    if (lid == 0) losses[row] = log(sum) + largest - target_logit;
    if (!write_grad) return;
    const float factor = scale / sum;
    for (int j = lid; j < classes; j += size) gr[j] = exp(lr[j] - largest) * factor - (j == t ? scale : 0.0f);
}
