/**
 * CPU reference for the SAE explain kernels (kernels/sae_feature_stats.wgsl, kernels/sae_label_iou.wgsl): per-image
 * feature statistics from a dense code, and the labelling IoU of the paper with bilinear upsampling by `resizeRef`
 * (Pillow's bilinear without antialiasing: the same half-pixel-centre, edge-clamped resampling as the kernel).
 */
import { resizeRef } from "./resize.ts";

/**
 * mean, max: [n, G]; counts: [n]. z: [G·P, n] (image g owns rows g·P … g·P + P − 1).
 * mean[c, g] = Σ_q z[g·P + q, c] / P, max[c, g] = max_q z[g·P + q, c], counts[c] = #{r : z[r, c] > 0}.
 */
export function featureStatsRef(
  z: ArrayLike<number>,
  G: number,
  P: number,
  n: number,
): { mean: Float64Array; max: Float64Array; counts: Uint32Array } {
  const mean = new Float64Array(n * G), max = new Float64Array(n * G).fill(-Infinity);
  const counts = new Uint32Array(n);
  for (let g = 0; g < G; g++) {
    for (let q = 0; q < P; q++) {
      for (let c = 0; c < n; c++) {
        const v = z[(g * P + q) * n + c];
        mean[c * G + g] += v;
        max[c * G + g] = Math.max(max[c * G + g], v);
        if (v > 0) counts[c]++;
      }
    }
  }
  for (let i = 0; i < n * G; i++) mean[i] /= P; // after the sum: equal sums give equal means
  return { mean, max, counts };
}

/**
 * The top `k` images of every feature over all G images: ids [n, k] by (mean desc, id asc), with their mean and max.
 * mean, max: [n, G] (as {@linkcode featureStatsRef} gives them).
 */
export function topImagesRef(
  mean: ArrayLike<number>,
  max: ArrayLike<number>,
  n: number,
  G: number,
  k: number,
): { ids: Uint32Array; scores: Float64Array; max: Float64Array } {
  const ids = new Uint32Array(n * k), scores = new Float64Array(n * k), mx = new Float64Array(n * k);
  for (let c = 0; c < n; c++) {
    const order = Array.from({ length: G }, (_, g) => g).sort((a, b) => mean[c * G + b] - mean[c * G + a] || a - b);
    for (let s = 0; s < k; s++) {
      ids[c * k + s] = order[s];
      scores[c * k + s] = mean[c * G + order[s]];
      mx[c * k + s] = max[c * G + order[s]];
    }
  }
  return { ids, scores, max: mx };
}

/**
 * IoU of feature c's binarised map on image `image` with a mask. z: [images·H·W, n]; mask data: [height·width] in
 * [0, 1] (object where ≥ 0.5). The map is min-max normalised, resized bilinearly to the mask, and binarised at
 * > threshold; a constant map gives 0.
 */
export function maskIouRef(
  z: ArrayLike<number>,
  n: number,
  grid: readonly [number, number],
  mask: { image: number; data: ArrayLike<number>; width: number; height: number },
  c: number,
  threshold = 0.1,
): number {
  const [H, W] = grid;
  const P = H * W;
  const map = new Float64Array(P);
  for (let q = 0; q < P; q++) map[q] = z[(mask.image * P + q) * n + c];
  let lo = Infinity, hi = -Infinity;
  for (const v of map) lo = Math.min(lo, v), hi = Math.max(hi, v);
  if (!(hi > lo)) return 0;
  const norm = map.map((v) => (v - lo) / (hi - lo));
  const up = resizeRef(norm, [1, 1, H, W], { size: [mask.height, mask.width], filter: "bilinear", antialias: false });
  let inter = 0, union = 0;
  for (let t = 0; t < up.length; t++) {
    const b = mask.data[t] >= 0.5;
    const a = up[t] > threshold;
    if (a && b) inter++;
    if (a || b) union++;
  }
  return union > 0 ? inter / union : 0;
}
