/** CPU reference for group_norm.wgsl (float64 accumulation). */

/**
 * GroupNorm, PyTorch semantics, optional SiLU after the affine. Writes `out` and, if given, `stats`.
 * out: [B, C, S], x: [B, C, S], weight: [C], bias: [C], stats: [B, groups, 2] (mean, rstd).
 */
export function groupNormRef(
  out: Float32Array,
  x: Float32Array,
  weight: Float32Array,
  bias: Float32Array,
  b: number,
  c: number,
  s: number,
  groups: number,
  eps: number,
  silu = false,
  stats?: Float32Array,
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
