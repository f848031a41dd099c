/** CPU reference for concat.wgsl. */
import { numel } from "../gpu/tensor.ts";

/** Concatenates along `axis`. xs[k]: shapes[k] (equal outside axis); returns [out, out shape]. */
export function concatRef(xs: ArrayLike<number>[], shapes: number[][], axis: number): [Float64Array, number[]] {
  const total = shapes.reduce((s, sh) => s + sh[axis], 0);
  const shape = shapes[0].map((d, i) => (i === axis ? total : d));
  const outer = numel(shape.slice(0, axis)), inner = numel(shape.slice(axis + 1));
  const out = new Float64Array(numel(shape));
  let i = 0;
  for (let o = 0; o < outer; o++) {
    for (const [k, x] of xs.entries()) {
      const run = shapes[k][axis] * inner;
      for (let j = 0; j < run; j++) out[i++] = x[o * run + j];
    }
  }
  return [out, shape];
}

/** Gradient of concatRef: dy split along `axis`. dy: [..., Σ sizes, ...], returns dxs[k]: [..., sizes[k], ...]. */
export function concatBackwardRef(
  dy: ArrayLike<number>,
  shape: number[],
  sizes: number[],
  axis: number,
): Float64Array[] {
  const outer = numel(shape.slice(0, axis)), inner = numel(shape.slice(axis + 1));
  const dxs = sizes.map((s) => new Float64Array(outer * s * inner));
  let i = 0;
  for (let o = 0; o < outer; o++) {
    for (const [k, s] of sizes.entries()) {
      for (let j = 0; j < s * inner; j++) dxs[k][o * s * inner + j] = dy[i++];
    }
  }
  return dxs;
}
