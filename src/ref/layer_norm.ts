/** CPU reference for layer_norm.wgsl (float64 accumulation). */

/**
 * LayerNorm over the last dimension. Writes `out` and, if given, `stats`.
 * out: [rows, d], x: [rows, d], weight: [d], bias: [d], stats: [rows, 2] (mean, rstd).
 */
export function layerNormRef(
  out: Float32Array,
  x: Float32Array,
  weight: Float32Array,
  bias: Float32Array,
  rows: number,
  d: number,
  eps: number,
  stats?: Float32Array,
): void {
  for (let r = 0; r < rows; r++) {
    const base = r * d;
    let sum = 0;
    for (let i = 0; i < d; i++) sum += x[base + i];
    const mean = sum / d;
    let q = 0;
    for (let i = 0; i < d; i++) q += (x[base + i] - mean) ** 2;
    const rstd = 1 / Math.sqrt(q / d + eps);
    if (stats) {
      stats[2 * r] = mean;
      stats[2 * r + 1] = rstd;
    }
    for (let i = 0; i < d; i++) out[base + i] = (x[base + i] - mean) * rstd * weight[i] + bias[i];
  }
}
