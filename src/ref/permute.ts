/** CPU reference for permute.wgsl. */
import { numel } from "../gpu/tensor.ts";
import { stridesOf } from "../ops/_shape.ts";

/** out = x.permute(perm), contiguous. x: shape; returns [out, out shape] (out.shape[k] = shape[perm[k]]). */
export function permuteRef(x: ArrayLike<number>, shape: number[], perm: number[]): [Float64Array, number[]] {
  const outShape = perm.map((a) => shape[a]);
  const st = stridesOf(shape);
  const out = new Float64Array(numel(outShape));
  const idx = new Array<number>(perm.length).fill(0);
  for (let i = 0; i < out.length; i++) {
    let j = 0;
    for (let k = 0; k < perm.length; k++) j += idx[k] * st[perm[k]];
    out[i] = x[j];
    for (let k = perm.length - 1; k >= 0; k--) { // odometer over the output index
      if (++idx[k] < outShape[k]) break;
      idx[k] = 0;
    }
  }
  return [out, outShape];
}

/**
 * Gradient of permuteRef: dx = dy permuted by the inverse of `perm` (the forward's). dy: [shape[perm[k]]]_k for the
 * forward input's `shape`; returns dx: shape.
 */
export function permuteBackwardRef(dy: ArrayLike<number>, shape: number[], perm: number[]): Float64Array {
  const inv = new Array<number>(perm.length);
  perm.forEach((a, k) => (inv[a] = k));
  return permuteRef(dy, perm.map((a) => shape[a]), inv)[0];
}
