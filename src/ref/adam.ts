/**
 * CPU reference of PyTorch's Adam / AdamW step (torch.optim.Adam `_single_tensor_adam`, amsgrad off), in float64.
 * @module
 */

/** Hyperparameters of one step (all required: the reference has no defaults to disagree about). */
export interface AdamRefOptions {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** AdamW (decoupled decay) instead of Adam (L2 added to the gradient). */
  decoupled: boolean;
}

/**
 * One Adam step t (1-based) in place.
 * param [n], m [n], v [n]: updated; grad [n]: read.
 */
export function adamStepRef(
  param: Float64Array,
  m: Float64Array,
  v: Float64Array,
  grad: ArrayLike<number>,
  t: number,
  o: AdamRefOptions,
): void {
  const bc1 = 1 - o.beta1 ** t, bc2 = 1 - o.beta2 ** t;
  const stepSize = o.lr / bc1, bc2Sqrt = Math.sqrt(bc2);
  for (let i = 0; i < param.length; i++) {
    let g = grad[i];
    if (o.decoupled) param[i] *= 1 - o.lr * o.weightDecay; // param.mul_(1 - lr * weight_decay)
    else g += o.weightDecay * param[i]; // grad = grad.add(param, alpha=weight_decay)
    m[i] += (g - m[i]) * (1 - o.beta1); // exp_avg.lerp_(grad, 1 - beta1)
    v[i] = v[i] * o.beta2 + (1 - o.beta2) * g * g; // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    const denom = Math.sqrt(v[i]) / bc2Sqrt + o.eps;
    param[i] -= stepSize * m[i] / denom; // param.addcdiv_(exp_avg, denom, value=-step_size)
  }
}
