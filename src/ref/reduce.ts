/** CPU reference for reduce.wgsl (float64 accumulation). */

/**
 * Sum (or mean) over the middle dimension of x viewed as [outer, n, inner].
 * out: [outer, inner], x: [outer, n, inner].
 */
export function reduceRef(
  out: Float32Array,
  x: Float32Array,
  outer: number,
  n: number,
  inner: number,
  op: "sum" | "mean" = "sum",
): void {
  const acc = new Float64Array(inner);
  for (let o = 0; o < outer; o++) {
    acc.fill(0);
    for (let k = 0; k < n; k++) {
      const base = (o * n + k) * inner;
      for (let j = 0; j < inner; j++) acc[j] += x[base + j];
    }
    for (let j = 0; j < inner; j++) out[o * inner + j] = op === "mean" ? acc[j] / n : acc[j];
  }
}
