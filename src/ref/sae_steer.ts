/**
 * CPU reference of kernels/sae_steer.wgsl (SAE steering, src/sae/steer.ts) and of kernels/sae_layout.wgsl (the
 * per-position top feature and its IoU against a mask, src/sae/layout.ts). Float64 accumulation.
 */

/** A feature of the reference: latent id, mode, mask row, β. */
export interface SteerRefFeature {
  id: number;
  mode: "spatial" | "global";
  maskRow: number;
  strength: number;
}

/**
 * Returns x after the edit (a copy). x: [B, C, hw] (layout "nchw") or [B, hw, C] ("bnc"); the batch range
 * [b0, b1) is edited. values, indices: [(b1 − b0)·hw, k], rows = image · hw + position. wDec: [C, n].
 * masks: [rows, hw].
 */
export function saeSteerRef(
  x: ArrayLike<number>,
  dims: { C: number; hw: number; layout: "nchw" | "bnc"; batch: [number, number] },
  values: ArrayLike<number>,
  indices: ArrayLike<number>,
  k: number,
  wDec: ArrayLike<number>,
  n: number,
  features: readonly SteerRefFeature[],
  masks?: ArrayLike<number>,
): Float64Array {
  const { C, hw, layout, batch } = dims;
  const out = Float64Array.from(x);
  const images = batch[1] - batch[0], rows = images * hw;
  const norm = new Float64Array(rows), sums = new Float64Array(images);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let j = 0; j < k; j++) s += values[r * k + j] ** 2;
    norm[r] = Math.sqrt(s);
    sums[Math.floor(r / hw)] += norm[r];
  }
  for (let r = 0; r < rows; r++) {
    const img = Math.floor(r / hw), pos = r % hw, b = batch[0] + img;
    for (const f of features) {
      let z = 0;
      for (let j = 0; j < k; j++) if (indices[r * k + j] === f.id) z = values[r * k + j];
      let coef: number;
      if (f.mode === "spatial") {
        const m = Math.min(1, Math.max(0, masks![f.maskRow * hw + pos]));
        coef = m * (f.strength * norm[r] - z) + (1 - m) * -z;
      } else {
        coef = sums[img] > 0 ? f.strength * norm[r] / sums[img] : 0;
      }
      for (let ch = 0; ch < C; ch++) {
        const i = layout === "nchw" ? (b * C + ch) * hw + pos : (b * hw + pos) * C + ch;
        out[i] += coef * wDec[ch * n + f.id];
      }
    }
  }
  return out;
}

/** Per row of a code [rows, k]: the id of its largest value when that value is > 0 (ties: the lower id), else −1. */
export function topFeatureRef(values: ArrayLike<number>, indices: ArrayLike<number>, k: number): Int32Array {
  const rows = values.length / k;
  const out = new Int32Array(rows).fill(-1);
  for (let r = 0; r < rows; r++) {
    let best = 0, id = -1;
    for (let j = 0; j < k; j++) {
      const v = values[r * k + j], c = indices[r * k + j];
      if (v > best || (v === best && v > 0 && c < id)) best = v, id = c;
    }
    out[r] = id;
  }
  return out;
}

/**
 * Per image of a top map [images, hw]: (intersection, union, predicted area, mask area) of {p : top[p] ∈ set}
 * against {p : mask[p] ≥ 0.5}.
 */
export function layoutIouRef(top: ArrayLike<number>, hw: number, set: readonly number[], mask: ArrayLike<number>) {
  const images = top.length / hw;
  const out: [number, number, number, number][] = [];
  for (let i = 0; i < images; i++) {
    let inter = 0, union = 0, pred = 0, area = 0;
    for (let p = 0; p < hw; p++) {
      const a = set.includes(top[i * hw + p]), b = mask[p] >= 0.5;
      inter += +(a && b), union += +(a || b), pred += +a, area += +b;
    }
    out.push([inter, union, pred, area]);
  }
  return out;
}
