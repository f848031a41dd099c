/** CPU reference for resize.wgsl: Pillow's `precompute_coeffs` + separable passes, in float64. */

/** Options of {@linkcode resizeRef} (see `ResizeOptions` in src/ops/resize.ts). */
export interface ResizeRefOptions {
  size: readonly [number, number];
  filter?: "bilinear" | "bicubic";
  antialias?: boolean;
  resizedSize?: readonly [number, number];
  offset?: readonly [number, number];
  channelAffine?: { scale: readonly number[]; shift: readonly number[] };
}

function filterRef(kind: "bilinear" | "bicubic", t: number): number {
  const a = Math.abs(t);
  if (kind === "bilinear") return a < 1 ? 1 - a : 0;
  if (a < 1) return (1.5 * a - 2.5) * a * a + 1; // Keys, a = −0.5
  if (a < 2) return (((a - 5) * a + 8) * a - 4) * -0.5;
  return 0;
}

/**
 * Per output index j of an axis: the first input index and the normalised weights (Pillow's `precompute_coeffs`
 * with the crop's `start` added to j). nIn: input length, resized: length of the full resize, nOut: outputs.
 */
export function resizeCoeffs(
  nIn: number,
  resized: number,
  start: number,
  nOut: number,
  kind: "bilinear" | "bicubic",
  antialias: boolean,
): { first: number; weights: number[] }[] {
  const scale = nIn / resized;
  const fs = antialias ? Math.max(scale, 1) : 1;
  const support = (kind === "bilinear" ? 1 : 2) * fs;
  const out = [];
  for (let j = 0; j < nOut; j++) {
    const center = (j + start + 0.5) * scale;
    const t0 = Math.max(Math.trunc(center - support + 0.5), 0);
    const t1 = Math.min(Math.trunc(center + support + 0.5), nIn);
    const weights: number[] = [];
    let sum = 0;
    for (let t = t0; t < t1; t++) {
      const w = filterRef(kind, (t - center + 0.5) / fs);
      weights.push(w);
      sum += w;
    }
    out.push({ first: t0, weights: sum !== 0 ? weights.map((w) => w / sum) : weights });
  }
  return out;
}

/**
 * Resize of x [B, C, H, W] → [B, C, size[0], size[1]]: horizontal pass, vertical pass, then the channel affine.
 * Both passes always run (an unchanged axis has the weights [1] or [1, 0, …], so it is an exact copy).
 */
export function resizeRef(x: ArrayLike<number>, shape: readonly number[], opts: ResizeRefOptions): Float64Array {
  const [B, C, H, W] = shape;
  const [h, w] = opts.size;
  const [rh, rw] = opts.resizedSize ?? opts.size;
  const [top, left] = opts.offset ?? [0, 0];
  const kind = opts.filter ?? "bicubic", aa = opts.antialias ?? true;
  const cx = resizeCoeffs(W, rw, left, w, kind, aa);
  const cy = resizeCoeffs(H, rh, top, h, kind, aa);
  const rows = new Float64Array(B * C * H * w); // [B·C, H, w]
  for (let p = 0; p < B * C * H; p++) {
    for (let j = 0; j < w; j++) {
      let acc = 0;
      cx[j].weights.forEach((wt, t) => (acc += wt * x[p * W + cx[j].first + t]));
      rows[p * w + j] = acc;
    }
  }
  const out = new Float64Array(B * C * h * w);
  for (let p = 0; p < B * C; p++) {
    const a = opts.channelAffine ? [opts.channelAffine.scale[p % C], opts.channelAffine.shift[p % C]] : [1, 0];
    for (let i = 0; i < h; i++) {
      for (let j = 0; j < w; j++) {
        let acc = 0;
        cy[i].weights.forEach((wt, t) => (acc += wt * rows[(p * H + cy[i].first + t) * w + j]));
        out[(p * h + i) * w + j] = a[0] * acc + a[1];
      }
    }
  }
  return out;
}
