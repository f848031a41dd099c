/** CPU reference for layer_norm.wgsl (float64 accumulation). */

/**
 * LayerNorm over the last dimension. Writes `out` and, if given, `stats`.
 * out: [rows, d], x: [rows, d], weight: [d], bias: [d], stats: [rows, 2] (mean, rstd).
 */
export function layerNormRef(
  out: Float32Array | Float64Array,
  x: ArrayLike<number>,
  weight: ArrayLike<number>,
  bias: ArrayLike<number>,
  rows: number,
  d: number,
  eps: number,
  stats?: Float32Array | Float64Array,
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

/** Gradients of {@linkcode layerNormRef}: dx [rows, d], dweight and dbias [d]. */
export interface LayerNormGradsRef {
  dx: Float64Array;
  dweight: Float64Array;
  dbias: Float64Array;
}

/**
 * Gradients of layerNormRef from dout and the forward's stats (float64): x̂ = (x − mean)·rstd,
 * dx = rstd·(dout·w − mean(dout·w) − x̂·mean(dout·w·x̂)), dweight = Σ_rows dout·x̂, dbias = Σ_rows dout.
 * x, dout: [rows, d], stats: [rows, 2] (mean, rstd), weight: [d].
 */
export function layerNormBackwardRef(
  x: ArrayLike<number>,
  dout: ArrayLike<number>,
  stats: ArrayLike<number>,
  weight: ArrayLike<number>,
  rows: number,
  d: number,
): LayerNormGradsRef {
  const dx = new Float64Array(rows * d), dweight = new Float64Array(d), dbias = new Float64Array(d);
  for (let r = 0; r < rows; r++) {
    const base = r * d, mean = stats[2 * r], rstd = stats[2 * r + 1];
    let sumGw = 0, sumGwx = 0;
    for (let i = 0; i < d; i++) {
      const g = dout[base + i], xh = (x[base + i] - mean) * rstd;
      dbias[i] += g;
      dweight[i] += g * xh;
      sumGw += g * weight[i];
      sumGwx += g * weight[i] * xh;
    }
    for (let i = 0; i < d; i++) {
      const xh = (x[base + i] - mean) * rstd;
      dx[base + i] = rstd * (dout[base + i] * weight[i] - sumGw / d - xh * (sumGwx / d));
    }
  }
  return { dx, dweight, dbias };
}
