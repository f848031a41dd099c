/** CPU reference for softmax.wgsl (float64). */

/** Softmax of scale·x over the last dimension. out: [rows, len], x: [rows, len]. */
export function softmaxRef(out: Float32Array, x: Float32Array, rows: number, len: number, scale = 1): void {
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
