/** CPU reference for geglu.wgsl, in float64. */
import { gelu64, unaryBackwardRef } from "./unary.ts";

/** GEGLU: out[r, c] = x[r, c] · gelu(x[r, F + c]). x: [rows, 2F], out: [rows, F]. */
export function gegluRef(x: ArrayLike<number>, rows: number, F: number): Float64Array {
  const out = new Float64Array(rows * F);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < F; c++) out[r * F + c] = x[r * 2 * F + c] * gelu64(x[r * 2 * F + F + c]);
  }
  return out;
}

/**
 * Gradient of gegluRef in float64. x: [rows, 2F], dy: [rows, F], returns dx: [rows, 2F]
 * (dh = dy·gelu(g) in the first half of each row, dg = dy·h·gelu'(g) in the second).
 */
export function gegluBackwardRef(x: ArrayLike<number>, dy: ArrayLike<number>, rows: number, F: number): Float64Array {
  const g = Float64Array.from({ length: rows * F }, (_, e) => x[Math.floor(e / F) * 2 * F + F + (e % F)]);
  const slope = unaryBackwardRef("gelu", g, new Float64Array(g.length).fill(1));
  const dx = new Float64Array(rows * 2 * F);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < F; c++) {
      const e = r * F + c, h = x[r * 2 * F + c];
      dx[r * 2 * F + c] = dy[e] * gelu64(g[e]);
      dx[r * 2 * F + F + c] = dy[e] * h * slope[e];
    }
  }
  return dx;
}
