/** CPU reference for topk.wgsl. */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The kernel's sort key: unsigned order equals float order (NaN above +inf, −0 just below +0). */
function orderKey(v: number): number {
  f32[0] = v;
  const b = u32[0];
  return (b & 0x80000000 ? ~b : b | 0x80000000) >>> 0;
}

/**
 * Row-wise top-k, sorted by value descending then index ascending (a full sort per row).
 * values: [rows, k], indices: [rows, k], x: [rows, len].
 */
export function topkRef(
  values: Float32Array,
  indices: Uint32Array,
  x: Float32Array,
  rows: number,
  len: number,
  k: number,
): void {
  const keys = new Uint32Array(len);
  const order = new Array<number>(len);
  for (let r = 0; r < rows; r++) {
    const base = r * len;
    for (let j = 0; j < len; j++) {
      keys[j] = orderKey(x[base + j]);
      order[j] = j;
    }
    order.sort((a, b) => keys[b] - keys[a] || a - b);
    for (let i = 0; i < k; i++) {
      values[r * k + i] = x[base + order[i]];
      indices[r * k + i] = order[i];
    }
  }
}
