/** CPU reference for softmax.wgsl (float64). */

/** Softmax of scale·x over the last dimension. out: [rows, len], x: [rows, len]. */
export function softmaxRef(
  out: Float32Array | Float64Array,
  x: ArrayLike<number>,
  rows: number,
  len: number,
  scale = 1,
): void {
  const e = new Float64Array(len);
  for (let r = 0; r < rows; r++) {
    const base = r * len;
    let m = -Infinity;
    for (let j = 0; j < len; j++) m = Math.max(m, scale * x[base + j]);
    let s = 0;
    for (let j = 0; j < len; j++) s += e[j] = Math.exp(scale * x[base + j] - m);
    for (let j = 0; j < len; j++) out[base + j] = e[j] / s;
  }
}

/**
 * Gradient of softmaxRef from its output (float64): dx = scale · y ⊙ (dout − Σ_j dout_j·y_j) per row.
 * y, dout: [rows, len]; returns dx: [rows, len].
 */
export function softmaxBackwardRef(
  y: ArrayLike<number>,
  dout: ArrayLike<number>,
  rows: number,
  len: number,
  scale = 1,
): Float64Array {
  const dx = new Float64Array(rows * len);
  for (let r = 0; r < rows; r++) {
    const base = r * len;
    let dot = 0;
    for (let j = 0; j < len; j++) dot += dout[base + j] * y[base + j];
    for (let j = 0; j < len; j++) dx[base + j] = scale * y[base + j] * (dout[base + j] - dot);
  }
  return dx;
}
