/** CPU reference for geglu.wgsl, in float64. */
import { gelu64 } from "./unary.ts";

/** GEGLU: out[r, c] = x[r, c] · gelu(x[r, F + c]). x: [rows, 2F], out: [rows, F]. */
export function gegluRef(x: ArrayLike<number>, rows: number, F: number): Float64Array {
  const out = new Float64Array(rows * F);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < F; c++) out[r * F + c] = x[r * 2 * F + c] * gelu64(x[r * 2 * F + F + c]);
  }
  return out;
}
