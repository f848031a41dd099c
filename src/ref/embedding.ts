/** CPU reference for embedding.wgsl. */

/** Row gather with ids clamped into the table. table: [V, D], ids: [N], returns out: [N, D]. */
export function embeddingRef(table: ArrayLike<number>, v: number, d: number, ids: ArrayLike<number>): Float64Array {
  const out = new Float64Array(ids.length * d);
  for (let t = 0; t < ids.length; t++) {
    const id = Math.min(Math.max(ids[t], 0), v - 1);
    for (let c = 0; c < d; c++) out[t * d + c] = table[id * d + c];
  }
  return out;
}

/** Gradient of embeddingRef w.r.t. the table (scatter-add, ids clamped). dy: [N, D], ids: [N], returns dtable: [V, D]. */
export function embeddingBackwardRef(
  dy: ArrayLike<number>,
  v: number,
  d: number,
  ids: ArrayLike<number>,
): Float64Array {
  const dtable = new Float64Array(v * d);
  for (let t = 0; t < ids.length; t++) {
    const id = Math.min(Math.max(ids[t], 0), v - 1);
    for (let c = 0; c < d; c++) dtable[id * d + c] += dy[t * d + c];
  }
  return dtable;
}
