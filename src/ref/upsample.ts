/** CPU reference for upsample.wgsl. */

/** Nearest upsampling by s. x: [planes, h, w], returns out: [planes, s·h, s·w]. */
export function upsampleNearestRef(x: ArrayLike<number>, planes: number, h: number, w: number, s = 2): Float64Array {
  const out = new Float64Array(planes * h * s * w * s);
  let i = 0;
  for (let p = 0; p < planes; p++) {
    for (let y = 0; y < h * s; y++) {
      for (let xo = 0; xo < w * s; xo++) out[i++] = x[(p * h + Math.floor(y / s)) * w + Math.floor(xo / s)];
    }
  }
  return out;
}

/** Gradient of upsampleNearestRef: s×s sum pooling. dy: [planes, s·h, s·w], returns dx: [planes, h, w]. */
export function upsampleNearestBackwardRef(
  dy: ArrayLike<number>,
  planes: number,
  h: number,
  w: number,
  s = 2,
): Float64Array {
  const dx = new Float64Array(planes * h * w);
  let i = 0;
  for (let p = 0; p < planes; p++) {
    for (let y = 0; y < h * s; y++) {
      for (let xo = 0; xo < w * s; xo++) dx[(p * h + Math.floor(y / s)) * w + Math.floor(xo / s)] += dy[i++];
    }
  }
  return dx;
}
