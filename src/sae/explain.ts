/**
 * Explaining a TopK SAE's features over a set of images (the feature browser of SDLens / "Emergence and Evolution
 * of Interpretable Concepts", and Revelio's top images): per feature its firing frequency, its top images ranked by
 * γ_c = mean over positions of z[·, c] (Surkov et al.), heat maps of where it fires, and labels from object masks by
 * the paper's rule (min-max normalised map, bilinear to the mask, binarised at 0.1, IoU > 0.5). All the math runs in
 * kernels/sae_feature_stats.wgsl and kernels/sae_label_iou.wgsl; the host only batches images and reads results.
 *
 * An image is one activation map: the H·W rows of one (prompt, step, half) of an activation store. Sources hand
 * rows over image by image ({@linkcode ImageSource}), so the same code serves a store on disk or arrays in memory.
 *
 * ```ts ignore
 * const stats = await featureStats(sae, source, { top: 8 });
 * const top = featureTop(stats, 1722);                                  // [{ image, score, max }, …]
 * const maps = await featureMaps(sae, source, top.map((t) => ({ feature: 1722, image: t.image })));
 * const { labels } = await labelFeatures(sae, source, masks);          // masks: FeatureMask[]
 * ```
 * @module
 */
import statsSrc from "../../kernels/sae_feature_stats.wgsl" with { type: "text" };
import iouSrc from "../../kernels/sae_label_iou.wgsl" with { type: "text" };
import { defineKernel, defineKernels } from "../gpu/kernel.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { assertShape, fmtShape, type Tensor } from "../gpu/tensor.ts";
import { grid1dFor, requireDtype } from "../ops/_alloc.ts";
import { binary } from "../ops/binary.ts";
import { matmul } from "../ops/matmul.ts";
import { maxTopK, topk } from "../ops/topk.ts";
import { encodeTopK } from "./encode.ts";
import type { Sae } from "./model.ts";
import { densify, MAX_LOOP, type SparseCode } from "./sparse.ts";

const STATS = defineKernels("sae_feature_stats.wgsl", statsSrc, ["image_stats", "count", "gather_maps", "gather_top"]);
const IOU = defineKernel("sae_label_iou.wgsl", iouSrc);
const WG = 64;
const IOU_WG = 128;
/** Default bytes of one batch's dense code z [rows, n] (the encoder's pre-activations take as much again). */
const BATCH_BYTES = 1 << 26;

/** The SAE's encoder alone: TopK(ReLU(W_enc (x − b_pre) + b_enc)) of x [B, d] as a sparse code [B, k]. */
export function saeEncode(rec: Recorder, sae: Sae, x: Tensor): SparseCode {
  const { d, nLatents: n, k, relu } = sae.config;
  requireDtype("saeEncode", x);
  if (x.shape.length !== 2 || x.shape[1] !== d) {
    throw new TypeError(`saeEncode: x ${fmtShape(x.shape)} must be [B, ${d}] for an SAE with d = ${d}`);
  }
  const xc = binary(rec, "sub", x, sae.params.b_pre);
  const pre = matmul(rec, xc, sae.params.W_enc, {
    transB: true,
    bias: sae.params.b_enc,
    out: rec.alloc([x.shape[0], n], "f32", "sae.pre"),
  });
  const code = encodeTopK(rec, pre, { k, activation: relu ? "relu" : "none" });
  rec.recycle(xc, pre);
  return code;
}

/** Where {@linkcode featureImageStats} accumulates: the [n, G] score matrices and the firing counts. */
export interface FeatureStatsTensors {
  /** f32 [n, G]: γ, the mean over positions of each feature on each image. */
  mean: Tensor;
  /** f32 [n, G]: the largest value of each feature on each image. */
  max: Tensor;
  /** u32 [n]: rows (positions) where each feature fired (z > 0); added to. */
  counts: Tensor;
}

/**
 * Records the statistics of one batch of whole images: `z` [images·P, n] is their dense code (image g owns rows
 * g·P … g·P + P − 1); columns `first` … `first + images − 1` of `mean` and `max` are written and `counts` is
 * increased. Deterministic (kernels/sae_feature_stats.wgsl).
 */
export function featureImageStats(
  rec: Recorder,
  z: Tensor,
  out: FeatureStatsTensors,
  opts: { positions: number; first: number },
): void {
  requireDtype("featureImageStats", z);
  requireDtype("featureImageStats", out.mean);
  requireDtype("featureImageStats", out.max);
  requireDtype("featureImageStats counts", out.counts, ["u32"]);
  if (z.shape.length !== 2) throw new TypeError(`featureImageStats: z ${fmtShape(z.shape)} must be [rows, n]`);
  const [rows, n] = z.shape;
  const P = opts.positions;
  if (!Number.isInteger(P) || P < 1 || rows % P !== 0) {
    throw new RangeError(`featureImageStats: z ${fmtShape(z.shape)} is not whole images of ${P} positions`);
  }
  if (out.mean.shape.length !== 2 || out.mean.shape[0] !== n) {
    throw new TypeError(
      `featureImageStats: mean ${fmtShape(out.mean.shape)} must be [${n}, images] for z ${fmtShape(z.shape)}`,
    );
  }
  const G = out.mean.shape[1];
  assertShape("featureImageStats: max against mean", out.max.shape, out.mean.shape);
  assertShape(`featureImageStats: counts (z is ${fmtShape(z.shape)})`, out.counts.shape, [n]);
  const images = rows / P;
  if (!Number.isInteger(opts.first) || opts.first < 0 || opts.first + images > G) {
    throw new RangeError(`featureImageStats: images ${opts.first} … ${opts.first + images - 1} outside [0, ${G})`);
  }
  if (rows > MAX_LOOP || P > MAX_LOOP) {
    throw new RangeError(`featureImageStats: ${rows} rows per batch exceed ${MAX_LOOP}`);
  }
  const base = { rows, n, positions: P, images, total: G, first: opts.first, jobs: 0 };
  let grid = grid1dFor(rec, images * n, WG);
  rec.dispatch(STATS.image_stats, {
    read: { z },
    write: { mean_out: out.mean, max_out: out.max },
    params: { ...base, row: grid[0] },
    grid,
  });
  grid = grid1dFor(rec, n, WG);
  rec.dispatch(STATS.count, { read: { z }, write: { counts: out.counts }, params: { ...base, row: grid[0] }, grid });
}

/**
 * The `k` images with the largest γ for every feature: `topk` over the rows of `stats.mean` [n, G] (ties to the
 * lower image id), with the max of each chosen (feature, image) beside it. All [n, k].
 */
export function topImages(
  rec: Recorder,
  stats: Pick<FeatureStatsTensors, "mean" | "max">,
  k: number,
): { scores: Tensor; ids: Tensor; max: Tensor } {
  const [n, G] = stats.mean.shape;
  const { values, indices } = topk(rec, stats.mean, { k });
  const max = rec.alloc([n, k], "f32", "sae.top_max");
  const grid = grid1dFor(rec, n * k, WG);
  rec.dispatch(STATS.gather_top, {
    read: { max_in: stats.max, top_ids: indices },
    write: { top_max: max },
    params: { rows: 0, n, positions: 1, images: 0, total: G, first: 0, jobs: k, row: grid[0] },
    grid,
  });
  return { scores: values, ids: indices, max };
}

/**
 * Heat maps: `maps[j, q] = z[image_j · P + q, feature_j]` for `jobs` u32 [J, 2] = (image within the batch, feature),
 * from the dense code `z` [images·P, n] of a batch of whole images. Returns [J, P].
 */
export function gatherFeatureMaps(rec: Recorder, z: Tensor, jobs: Tensor, positions: number): Tensor {
  requireDtype("gatherFeatureMaps", z);
  requireDtype("gatherFeatureMaps jobs", jobs, ["u32"]);
  if (z.shape.length !== 2 || z.shape[0] % positions !== 0) {
    throw new TypeError(`gatherFeatureMaps: z ${fmtShape(z.shape)} must be [images · ${positions}, n]`);
  }
  if (jobs.shape.length !== 2 || jobs.shape[1] !== 2) {
    throw new TypeError(`gatherFeatureMaps: jobs ${fmtShape(jobs.shape)} must be [J, 2] (image, feature)`);
  }
  const [rows, n] = z.shape;
  const J = jobs.shape[0];
  const maps = rec.alloc([J, positions], "f32", "sae.maps");
  const grid = grid1dFor(rec, J * positions, WG);
  rec.dispatch(STATS.gather_maps, {
    read: { z, job_list: jobs },
    write: { maps },
    params: { rows, n, positions, images: rows / positions, total: 0, first: 0, jobs: J, row: grid[0] },
    grid,
  });
  return maps;
}

/**
 * The IoU of every feature's binarised map with every mask (kernels/sae_label_iou.wgsl): `z` [images·H·W, n] is
 * the dense code of a batch of whole images, `values` f32 the masks concatenated (in [0, 1]; ≥ 0.5 = object),
 * `info` u32 [M, 4] = (image within the batch, first value, height, width) per mask. Returns iou f32 [M, n].
 */
export function maskIou(
  rec: Recorder,
  z: Tensor,
  masks: { values: Tensor; info: Tensor },
  opts: { grid: readonly [number, number]; threshold?: number },
): Tensor {
  requireDtype("maskIou", z);
  requireDtype("maskIou values", masks.values);
  requireDtype("maskIou info", masks.info, ["u32"]);
  const [H, W] = opts.grid;
  if (z.shape.length !== 2 || z.shape[0] % (H * W) !== 0) {
    throw new TypeError(`maskIou: z ${fmtShape(z.shape)} must be [images · ${H}·${W}, n]`);
  }
  if (masks.info.shape.length !== 2 || masks.info.shape[1] !== 4) {
    throw new TypeError(`maskIou: info ${fmtShape(masks.info.shape)} must be [M, 4] (image, first, height, width)`);
  }
  const n = z.shape[1];
  const M = masks.info.shape[0];
  const threshold = opts.threshold ?? 0.1;
  const iou = rec.alloc([M, n], "f32", "sae.iou");
  const grid = grid1dFor(rec, M * n, 1);
  rec.dispatch(IOU, {
    read: { z, mask_values: masks.values, mask_info: masks.info },
    write: { iou },
    params: { n, height: H, width: W, masks: M, threshold, row: grid[0] },
    grid,
    overrides: { WG: IOU_WG },
  });
  return iou;
}

/** Images, each the rows of one activation map in position order, read on demand (a store, or memory). */
export interface ImageSource {
  /** Number of images G; ids are 0 … G − 1. */
  readonly images: number;
  /** Activation grid [H, W]: an image has H·W rows, row q at (q / W, q % W). */
  readonly grid: readonly [number, number];
  /** Width of a row. */
  readonly d: number;
  /** The rows of images `ids`, image after image: [ids.length · H·W, d]. */
  read(ids: readonly number[]): Promise<Float32Array>;
}

/** An in-memory {@linkcode ImageSource} over rows [G·H·W, d] (image g owns rows g·H·W …). */
export function arrayImageSource(rows: Float32Array, d: number, grid: readonly [number, number]): ImageSource {
  const P = grid[0] * grid[1];
  if (rows.length % (P * d) !== 0) {
    throw new TypeError(`arrayImageSource: ${rows.length} values are not whole images of ${P} rows of ${d}`);
  }
  return {
    images: rows.length / (P * d),
    grid,
    d,
    read(ids) {
      const out = new Float32Array(ids.length * P * d);
      ids.forEach((g, i) => out.set(rows.subarray(g * P * d, (g + 1) * P * d), i * P * d));
      return Promise.resolve(out);
    },
  };
}

/** Batching options shared by the drivers below. */
export interface ExplainBatchOptions {
  /** Rows encoded per batch (rounded down to whole images, at least one); default: a 64 MiB dense code. */
  batchRows?: number;
  /** Called after each batch with the images done so far and the total. */
  onProgress?: (done: number, total: number) => void;
}

function imagesPerBatch(sae: Sae, src: ImageSource, opts: ExplainBatchOptions): number {
  const P = src.grid[0] * src.grid[1];
  const n = sae.config.nLatents;
  if (src.d !== sae.config.d) {
    throw new TypeError(`explain: the SAE reads d = ${sae.config.d} but the images' rows have d = ${src.d}`);
  }
  const rows = opts.batchRows ?? Math.min(MAX_LOOP, Math.floor(BATCH_BYTES / (4 * n)));
  return Math.max(1, Math.floor(Math.min(rows, MAX_LOOP) / P));
}

/**
 * Encodes images `ids` batch by batch and hands each batch's dense code z [batch·P, n] to `use` (which records on
 * the same recorder and returns what to read back once submitted).
 */
async function forEachBatch<T>(
  sae: Sae,
  src: ImageSource,
  ids: readonly number[],
  opts: ExplainBatchOptions,
  use: (rec: Recorder, z: Tensor, batch: readonly number[], first: number) => () => Promise<T>,
): Promise<T[]> {
  const ctx = sae.ctx;
  const per = imagesPerBatch(sae, src, opts);
  const P = src.grid[0] * src.grid[1];
  const out: T[] = [];
  for (let first = 0; first < ids.length; first += per) {
    const batch = ids.slice(first, first + per);
    ctx.beginScope();
    try {
      const x = ctx.upload(await src.read(batch), [batch.length * P, src.d], "f32", "sae.explain.x");
      const rec = ctx.recorder("sae explain");
      const code = saeEncode(rec, sae, x);
      const z = densify(rec, code, sae.config.nLatents, { out: rec.alloc([batch.length * P, sae.config.nLatents]) });
      rec.recycle(code.values, code.indices);
      const finish = use(rec, z, batch, first);
      await rec.submit();
      out.push(await finish());
    } finally {
      ctx.release(...ctx.endScope());
    }
    opts.onProgress?.(Math.min(first + per, ids.length), ids.length);
  }
  return out;
}

/** What {@linkcode featureStats} measured. */
export interface FeatureStatsResult {
  /** Latents n. */
  n: number;
  /** Images G and rows (G · positions) read. */
  images: number;
  rows: number;
  /** Rows where each latent fired (z > 0), [n]; frequency = counts[c] / rows. */
  counts: Uint32Array;
  /** Top images kept per latent. */
  k: number;
  /** [n, k]: image ids by descending γ (ties to the lower id), their γ and their max. */
  ids: Uint32Array;
  scores: Float32Array;
  max: Float32Array;
}

/**
 * Frequency and top images of every latent of `sae` over all images of `src`: one encoding pass, the [n, G]
 * matrices of γ and max on the GPU (n·G·4 bytes each must fit one binding), then a row-wise top-k.
 */
export async function featureStats(
  sae: Sae,
  src: ImageSource,
  opts: ExplainBatchOptions & { top?: number } = {},
): Promise<FeatureStatsResult> {
  const ctx = sae.ctx;
  const n = sae.config.nLatents;
  const G = src.images;
  const P = src.grid[0] * src.grid[1];
  if (G < 1) throw new RangeError("featureStats: the source has no images");
  const bytes = n * G * 4;
  if (bytes > ctx.limits.maxStorageBufferBindingSize) {
    throw new RangeError(
      `featureStats: the [${n}, ${G}] score matrix needs ${bytes} bytes, over this device's ` +
        `maxStorageBufferBindingSize (${ctx.limits.maxStorageBufferBindingSize}); explain fewer images (one step)`,
    );
  }
  const k = Math.min(opts.top ?? 8, G);
  if (!Number.isInteger(k) || k < 1 || k > maxTopK(ctx.limits)) {
    throw new RangeError(`featureStats: top = ${opts.top} must be an integer in [1, ${maxTopK(ctx.limits)}]`);
  }
  const stats: FeatureStatsTensors = {
    mean: ctx.persist(ctx.tensor([n, G], "f32", "sae.gamma")),
    max: ctx.persist(ctx.tensor([n, G], "f32", "sae.max")),
    counts: ctx.persist(ctx.tensor([n], "u32", "sae.counts")),
  };
  try {
    const ids = Array.from({ length: G }, (_, g) => g);
    await forEachBatch(sae, src, ids, opts, (rec, z, batch, first) => {
      featureImageStats(rec, z, stats, { positions: P, first });
      rec.recycle(z);
      return () => Promise.resolve(batch.length);
    });
    ctx.beginScope();
    try {
      const rec = ctx.recorder("sae explain top");
      const top = topImages(rec, stats, k);
      await rec.submit();
      return {
        n,
        images: G,
        rows: G * P,
        counts: (await ctx.read(stats.counts)).slice() as Uint32Array,
        k,
        ids: (await ctx.read(top.ids)).slice() as Uint32Array,
        scores: (await ctx.readF32(top.scores)).slice(),
        max: (await ctx.readF32(top.max)).slice(),
      };
    } finally {
      ctx.release(...ctx.endScope());
    }
  } finally {
    ctx.release(stats.mean, stats.max, stats.counts);
  }
}

/** One top image of a feature. */
export interface TopImage {
  image: number;
  /** γ: the feature's mean over the image's positions. */
  score: number;
  max: number;
}

/** The top images of latent `c` where it fired (γ > 0), best first. */
export function featureTop(s: FeatureStatsResult, c: number): TopImage[] {
  const out: TopImage[] = [];
  for (let j = 0; j < s.k; j++) {
    const at = c * s.k + j;
    if (s.scores[at] > 0) out.push({ image: s.ids[at], score: s.scores[at], max: s.max[at] });
  }
  return out;
}

/** Image ids in ascending order, each once. */
function uniqueSorted(ids: Iterable<number>): number[] {
  return [...new Set(ids)].sort((a, b) => a - b);
}

/**
 * Heat maps of (feature, image) pairs: each the feature's value at every position of the image's grid. Returns
 * [pairs.length, H·W] in the order of `pairs`.
 */
export async function featureMaps(
  sae: Sae,
  src: ImageSource,
  pairs: readonly { feature: number; image: number }[],
  opts: ExplainBatchOptions = {},
): Promise<Float32Array> {
  const P = src.grid[0] * src.grid[1];
  const n = sae.config.nLatents;
  for (const { feature, image } of pairs) {
    if (!(feature >= 0 && feature < n && image >= 0 && image < src.images)) {
      throw new RangeError(`featureMaps: (feature ${feature}, image ${image}) outside [0, ${n}) × [0, ${src.images})`);
    }
  }
  const out = new Float32Array(pairs.length * P);
  const ids = uniqueSorted(pairs.map((p) => p.image));
  await forEachBatch(sae, src, ids, opts, (rec, z, batch) => {
    const slot = new Map(batch.map((g, i) => [g, i]));
    const mine = pairs.flatMap((p, j) => (slot.has(p.image) ? [j] : []));
    const jobs = rec.ctx.upload(
      mine.flatMap((j) => [slot.get(pairs[j].image)!, pairs[j].feature]),
      [mine.length, 2],
      "u32",
      "sae.map_jobs",
    );
    const maps = gatherFeatureMaps(rec, z, jobs, P);
    return async () => {
      const got = await rec.ctx.readF32(maps);
      mine.forEach((j, i) => out.set(got.subarray(i * P, (i + 1) * P), j * P));
    };
  });
  return out;
}

/** An object mask of one image (e.g. from a segmenter): [height, width] row-major in [0, 1], ≥ 0.5 = object. */
export interface FeatureMask {
  image: number;
  label: string;
  data: Float32Array;
  width: number;
  height: number;
}

/** One label a feature earned: the mask's label, on which image, with which IoU. */
export interface FeatureLabel {
  label: string;
  image: number;
  iou: number;
}

/** Options of {@linkcode labelFeatures}. */
export interface LabelOptions extends ExplainBatchOptions {
  /** Binarisation threshold of the min-max-normalised map (paper: 0.1). */
  threshold?: number;
  /** A feature takes a mask's label when the IoU exceeds this (paper: 0.5). */
  minIou?: number;
}

/**
 * The paper's concept dictionary from object masks: for every latent c and mask m (of image i), the IoU of c's map
 * on image i — min-max normalised, bilinearly upsampled to the mask, binarised at `threshold` — with the mask
 * (on the GPU, {@linkcode maskIou}); IoU > `minIou` labels c with the mask's label. Returns the IoU matrix
 * [masks.length, n] and, per latent, its labels (best IoU first).
 */
export async function labelFeatures(
  sae: Sae,
  src: ImageSource,
  masks: readonly FeatureMask[],
  opts: LabelOptions = {},
): Promise<{ iou: Float32Array; labels: FeatureLabel[][] }> {
  const n = sae.config.nLatents;
  const minIou = opts.minIou ?? 0.5;
  for (const m of masks) {
    if (!(m.image >= 0 && m.image < src.images)) {
      throw new RangeError(`labelFeatures: mask "${m.label}" is for image ${m.image}, outside [0, ${src.images})`);
    }
    if (m.data.length !== m.width * m.height || m.width < 1 || m.height < 1) {
      throw new TypeError(`labelFeatures: mask "${m.label}" has ${m.data.length} values for ${m.width}×${m.height}`);
    }
    if (Math.ceil((m.width * m.height) / IOU_WG) > MAX_LOOP) {
      throw new RangeError(`labelFeatures: mask "${m.label}" (${m.width}×${m.height}) is too large`);
    }
  }
  const iou = new Float32Array(masks.length * n);
  const ids = uniqueSorted(masks.map((m) => m.image));
  await forEachBatch(sae, src, ids, opts, (rec, z, batch) => {
    const slot = new Map(batch.map((g, i) => [g, i]));
    const mine = masks.flatMap((m, j) => (slot.has(m.image) ? [j] : []));
    const total = mine.reduce((a, j) => a + masks[j].data.length, 0);
    const values = new Float32Array(total), info = new Uint32Array(mine.length * 4);
    let at = 0;
    mine.forEach((j, i) => {
      const m = masks[j];
      values.set(m.data, at);
      info.set([slot.get(m.image)!, at, m.height, m.width], i * 4);
      at += m.data.length;
    });
    const t = maskIou(rec, z, {
      values: rec.ctx.upload(values, [total], "f32", "sae.masks"),
      info: rec.ctx.upload(info, [mine.length, 4], "u32", "sae.mask_info"),
    }, { grid: src.grid, threshold: opts.threshold });
    return async () => {
      const got = await rec.ctx.readF32(t);
      mine.forEach((j, i) => iou.set(got.subarray(i * n, (i + 1) * n), j * n));
    };
  });
  const labels: FeatureLabel[][] = Array.from({ length: n }, () => []);
  masks.forEach((m, j) => {
    for (let c = 0; c < n; c++) {
      const v = iou[j * n + c];
      if (v > minIou) labels[c].push({ label: m.label, image: m.image, iou: v });
    }
  });
  for (const l of labels) l.sort((a, b) => b.iou - a.iou);
  return { iou, labels };
}
