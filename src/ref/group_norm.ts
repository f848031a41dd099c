/** CPU reference for group_norm.wgsl (float64 accumulation). */

/**
 * GroupNorm, PyTorch semantics, optional SiLU after the affine. Writes `out` and, if given, `stats`.
 * out: [B, C, S], x: [B, C, S], weight: [C], bias: [C], stats: [B, groups, 2] (mean, rstd).
 */
export function groupNormRef(
  out: Float32Array | Float64Array,
  x: ArrayLike<number>,
  weight: ArrayLike<number>,
  bias: ArrayLike<number>,
  b: number,
  c: number,
  s: number,
  groups: number,
  eps: number,
  silu = false,
  stats?: Float32Array | Float64Array,
): void {
  const cpg = c / groups, n = cpg * s;
  for (let g = 0; g < b * groups; g++) {
    const base = g * n;
    let sum = 0;
    for (let i = 0; i < n; i++) sum += x[base + i];
    const mean = sum / n;
    let q = 0;
    for (let i = 0; i < n; i++) q += (x[base + i] - mean) ** 2;
    const rstd = 1 / Math.sqrt(q / n + eps);
    if (stats) {
      stats[2 * g] = mean;
      stats[2 * g + 1] = rstd;
    }
    for (let i = 0; i < n; i++) {
      const ch = (g % groups) * cpg + Math.floor(i / s);
      let y = (x[base + i] - mean) * rstd * weight[ch] + bias[ch];
      if (silu) y = y / (1 + Math.exp(-y));
      out[base + i] = y;
    }
  }
}

/** Gradients of {@linkcode groupNormRef}: dx [B, C, S], dweight and dbias [C]. */
export interface GroupNormGradsRef {
  dx: Float64Array;
  dweight: Float64Array;
  dbias: Float64Array;
}

/**
 * Gradients of groupNormRef from dout and the forward's stats (float64): x̂ = (x − mean)·rstd, g = dout (times
 * silu'(x̂·w + b) when silu), dbias = Σ g, dweight = Σ g·x̂, dx = rstd·(g·w − mean(g·w) − x̂·mean(g·w·x̂)).
 * x, dout: [B, C, S], stats: [B, groups, 2] (mean, rstd), weight, bias: [C] (bias read only with silu).
 * Returns dx: [B, C, S], dweight: [C], dbias: [C].
 */
export function groupNormBackwardRef(
  x: ArrayLike<number>,
  dout: ArrayLike<number>,
  stats: ArrayLike<number>,
  weight: ArrayLike<number>,
  bias: ArrayLike<number>,
  b: number,
  c: number,
  s: number,
  groups: number,
  silu = false,
): GroupNormGradsRef {
  const cpg = c / groups, n = cpg * s;
  const dx = new Float64Array(b * c * s), dweight = new Float64Array(c), dbias = new Float64Array(c);
  const g = new Float64Array(n), xh = new Float64Array(n);
  for (let q = 0; q < b * groups; q++) {
    const base = q * n, mean = stats[2 * q], rstd = stats[2 * q + 1];
    let sumGw = 0, sumGwx = 0;
    for (let i = 0; i < n; i++) {
      const ch = (q % groups) * cpg + Math.floor(i / s);
      xh[i] = (x[base + i] - mean) * rstd;
      g[i] = dout[base + i];
      if (silu) {
        const z = xh[i] * weight[ch] + bias[ch], sg = 1 / (1 + Math.exp(-z));
        g[i] *= sg * (1 + z * (1 - sg));
      }
      dbias[ch] += g[i];
      dweight[ch] += g[i] * xh[i];
      sumGw += g[i] * weight[ch];
      sumGwx += g[i] * weight[ch] * xh[i];
    }
    for (let i = 0; i < n; i++) {
      const ch = (q % groups) * cpg + Math.floor(i / s);
      dx[base + i] = rstd * (g[i] * weight[ch] - sumGw / n - xh[i] * (sumGwx / n));
    }
  }
  return { dx, dweight, dbias };
}
