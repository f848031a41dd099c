/**
 * Explaining a TopK SAE's features over a set of images (the feature browser of SDLens / "Emergence and Evolution
 * of Interpretable Concepts", and Revelio's top images): per feature its firing frequency, its top images ranked by
 * γ_c = mean over positions of z[·, c] (Surkov et al.; or, as Revelio does, of ReLU of the dense pre-activation),
 * heat maps of where it fires, and labels from object masks by the paper's rule (min-max normalised map, bilinear to
 * the mask, binarised at 0.1, IoU > 0.5). All the math runs in kernels/sae_feature_stats.wgsl,
 * kernels/sae_label_iou.wgsl and the `topk` op; the host only batches images and reads results.
 *
 * An image is one activation map: the H·W rows of one (prompt, step, half) of an activation store. Sources hand
 * rows over image by image ({@linkcode ImageSource}), so the same code serves a store on disk or arrays in memory.
 * The top images are kept as running top-k lists merged batch by batch, so the number of images is unbounded: the
 * GPU holds O(n · top) plus one batch.
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
import { maxTopK, topk } from "../ops/topk.ts";
import { type Sae, saeEncode } from "./model.ts";
import { densify, MAX_LOOP } from "./sparse.ts";

const STATS = defineKernels("sae_feature_stats.wgsl", statsSrc, [
  "image_stats",
  "count",
  "gather_maps",
  "seed_top",
  "merge_top",
]);
const IOU = defineKernel("sae_label_iou.wgsl", iouSrc);
const WG = 64;
const IOU_WG = 128;
/** Default bytes of one batch's dense code z [rows, n] (the encoder's pre-activations take as much again). */
const BATCH_BYTES = 1 << 26;

/**
 * Which values rank a feature's images and draw its heat maps: the TopK code z (SDLens; the default) or ReLU of the
 * dense pre-activation W_enc (x − b_pre) + b_enc (Revelio, whose neurons are ranked before any TopK).
 */
export type ExplainValues = "code" | "dense";

/** The uniform of kernels/sae_feature_stats.wgsl, zero where an entry point does not read a field. */
function statsParams(p: Partial<Record<string, number>>): Record<string, number> {
  return {
    rows: 0,
    n: 0,
    positions: 1,
    images: 0,
    total: 0,
    first: 0,
    jobs: 0,
    row: 0,
    kept: 0,
    base: 0,
    relu: 0,
    ...p,
  } as Record<string, number>;
}

/** Where {@linkcode featureImageStats} writes: the [n, C] candidate score matrices and the firing counts. */
export interface FeatureStatsTensors {
  /** f32 [n, C]: γ, the mean over positions of each feature on each image. */
  mean: Tensor;
  /** f32 [n, C]: the largest value of each feature on each image. */
  max: Tensor;
  /** u32 [n]: rows (positions) where each feature fired (z > 0); added to. Omit to skip counting. */
  counts?: Tensor;
}

/**
 * Records the statistics of one batch of whole images: `z` [images·P, n] is their dense code (image g owns rows
 * g·P … g·P + P − 1); columns `first` … `first + images − 1` of `mean` and `max` are written and `counts` (when
 * given) is increased. With `relu`, the values are read through max(·, 0): pass the pre-activations as `z` to
 * score by ReLU(pre) (then count firings on the code separately). Deterministic (kernels/sae_feature_stats.wgsl).
 */
export function featureImageStats(
  rec: Recorder,
  z: Tensor,
  out: FeatureStatsTensors,
  opts: { positions: number; first: number; relu?: boolean },
): void {
  requireDtype("featureImageStats", z);
  requireDtype("featureImageStats", out.mean);
  requireDtype("featureImageStats", out.max);
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
  const C = out.mean.shape[1];
  assertShape("featureImageStats: max against mean", out.max.shape, out.mean.shape);
  if (out.counts) {
    requireDtype("featureImageStats counts", out.counts, ["u32"]);
    assertShape(`featureImageStats: counts (z is ${fmtShape(z.shape)})`, out.counts.shape, [n]);
  }
  const images = rows / P;
  if (!Number.isInteger(opts.first) || opts.first < 0 || opts.first + images > C) {
    throw new RangeError(`featureImageStats: images ${opts.first} … ${opts.first + images - 1} outside [0, ${C})`);
  }
  if (rows > MAX_LOOP || P > MAX_LOOP) {
    throw new RangeError(`featureImageStats: ${rows} rows per batch exceed ${MAX_LOOP}`);
  }
  const base = { rows, n, positions: P, images, total: C, first: opts.first, relu: opts.relu ? 1 : 0 };
  const grid = grid1dFor(rec, images * n, WG);
  rec.dispatch(STATS.image_stats, {
    read: { z },
    write: { mean_out: out.mean, max_out: out.max },
    params: statsParams({ ...base, row: grid[0] }),
    grid,
  });
  if (out.counts) featureCounts(rec, z, out.counts);
}

/** Adds to `counts` u32 [n] the rows of the dense code `z` [rows, n] where each latent fired (z > 0). */
export function featureCounts(rec: Recorder, z: Tensor, counts: Tensor): void {
  requireDtype("featureCounts", z);
  requireDtype("featureCounts counts", counts, ["u32"]);
  if (z.shape.length !== 2) throw new TypeError(`featureCounts: z ${fmtShape(z.shape)} must be [rows, n]`);
  const [rows, n] = z.shape;
  assertShape(`featureCounts: counts (z is ${fmtShape(z.shape)})`, counts.shape, [n]);
  if (rows > MAX_LOOP) throw new RangeError(`featureCounts: ${rows} rows per batch exceed ${MAX_LOOP}`);
  const grid = grid1dFor(rec, n, WG);
  rec.dispatch(STATS.count, { read: { z }, write: { counts }, params: statsParams({ rows, n, row: grid[0] }), grid });
}

/** Running top images of every feature: all [n, T], best first (γ descending, ties to the lower image id). */
export interface TopImagesTensors {
  /** f32: γ. */
  scores: Tensor;
  /** u32: image ids. */
  ids: Tensor;
  /** f32: the feature's max on the image. */
  max: Tensor;
}

/**
 * Merges a batch into the running top images of every feature. `cand` {mean, max} f32 [n, T + B]: its last B
 * columns hold the batch's images `base` … `base + B − 1` ({@linkcode featureImageStats} with `first` = T); its
 * first T columns are filled here from `running` [n, T] (null: T = 0, the first batch). Returns new lists
 * [n, min(k, T + B)] by `topk` over the candidates: the kept images have lower ids than the batch's, and each list
 * is sorted, so `topk`'s ties to the lower column are ties to the lower image id — the lists equal the top-k over
 * every image merged so far.
 */
export function mergeTopImages(
  rec: Recorder,
  cand: { mean: Tensor; max: Tensor },
  running: TopImagesTensors | null,
  opts: { base: number; k: number },
): TopImagesTensors {
  requireDtype("mergeTopImages", cand.mean);
  requireDtype("mergeTopImages", cand.max);
  if (cand.mean.shape.length !== 2) {
    throw new TypeError(`mergeTopImages: candidates ${fmtShape(cand.mean.shape)} must be [n, T + B]`);
  }
  const [n, C] = cand.mean.shape;
  assertShape("mergeTopImages: candidate max against mean", cand.max.shape, cand.mean.shape);
  const T = running ? running.scores.shape[1] : 0;
  if (running) {
    requireDtype("mergeTopImages running scores", running.scores);
    requireDtype("mergeTopImages running max", running.max);
    requireDtype("mergeTopImages running ids", running.ids, ["u32"]);
    assertShape(`mergeTopImages: running scores (candidates ${fmtShape(cand.mean.shape)})`, running.scores.shape, [
      n,
      T,
    ]);
    assertShape("mergeTopImages: running ids", running.ids.shape, [n, T]);
    assertShape("mergeTopImages: running max", running.max.shape, [n, T]);
  }
  if (!(C > T)) {
    throw new RangeError(`mergeTopImages: candidates ${fmtShape(cand.mean.shape)} hold no batch beside T = ${T}`);
  }
  const { base, k } = opts;
  if (!Number.isInteger(base) || base < 0 || base + C - T > 2 ** 32) {
    throw new RangeError(`mergeTopImages: base = ${base} must be a u32 image id`);
  }
  if (running && T > 0) {
    const grid = grid1dFor(rec, n * T, WG);
    rec.dispatch(STATS.seed_top, {
      read: { run_scores: running.scores, max_in: running.max },
      write: { mean_out: cand.mean, max_out: cand.max },
      params: statsParams({ n, total: C, kept: T, row: grid[0] }),
      grid,
    });
  }
  const { values, indices } = topk(rec, cand.mean, { k });
  const ids = rec.alloc([n, k], "u32", "sae.top_ids");
  const max = rec.alloc([n, k], "f32", "sae.top_max");
  const grid = grid1dFor(rec, n * k, WG);
  rec.dispatch(STATS.merge_top, {
    read: { max_in: cand.max, top_ids: indices, run_ids: running?.ids ?? indices },
    write: { top_max: max, new_ids: ids },
    params: statsParams({ n, total: C, jobs: k, kept: T, base, row: grid[0] }),
    grid,
  });
  rec.recycle(indices);
  return { scores: values, ids, max };
}

/**
 * Heat maps: `maps[j, q] = z[image_j · P + q, feature_j]` for `jobs` u32 [J, 2] = (image within the batch, feature),
 * from the dense code `z` [images·P, n] of a batch of whole images (or, with `relu`, ReLU of the pre-activations
 * passed as `z`). Returns [J, P].
 */
export function gatherFeatureMaps(
  rec: Recorder,
  z: Tensor,
  jobs: Tensor,
  positions: number,
  opts: { relu?: boolean } = {},
): Tensor {
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
    params: statsParams({
      rows,
      n,
      positions,
      images: rows / positions,
      jobs: J,
      relu: opts.relu ? 1 : 0,
      row: grid[0],
    }),
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
  /**
   * The rows of images `ids`, image after image: [ids.length · H·W, d], as host floats or as a tensor recorded on
   * `rec` (allocated with `rec.alloc`; the driver recycles it after the batch).
   */
  read(ids: readonly number[], rec: Recorder): Float32Array | Tensor | Promise<Float32Array | Tensor>;
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
      return out;
    },
  };
}

/** Batching options shared by the drivers below. */
export interface ExplainBatchOptions {
  /**
   * Rows encoded per batch (rounded down to whole images, at least one; clamped so that every per-batch buffer fits
   * one storage binding, see {@linkcode explainBatchImages}); default: a 64 MiB dense code.
   */
  batchRows?: number;
  /** Called after each batch with the images done so far and the total. */
  onProgress?: (done: number, total: number) => void;
}

/**
 * Images per batch of the explain drivers: whole images of `positions` rows, as many as `batchRows` rows (default:
 * a 64 MiB dense code [rows, n]), clamped so that every per-batch buffer fits one storage binding of `limit` bytes
 * (the device's `maxStorageBufferBindingSize`): the pre-activations and the dense code [rows, n], the batch and
 * x − b_pre [rows, d], and with `kept` running top images the candidates [n, kept + images]. Throws a RangeError
 * naming P, n and the limit when one image alone does not fit.
 */
export function explainBatchImages(
  limit: number,
  s: { n: number; d: number; positions: number; batchRows?: number; kept?: number },
): number {
  const { n, d, positions: P } = s;
  const kept = s.kept ?? 0;
  const wide = Math.max(n, d);
  if (P * wide * 4 > limit) {
    throw new RangeError(
      `explain: one image of P = ${P} positions needs a [${P}, ${wide}] f32 buffer (${P * wide * 4} bytes; ` +
        `n = ${n} latents, d = ${d}), over this device's maxStorageBufferBindingSize (${limit}); ` +
        `use a store with a smaller grid or an SAE with fewer latents`,
    );
  }
  const rowCap = Math.floor(limit / (4 * wide));
  const rows = Math.min(s.batchRows ?? Math.floor(BATCH_BYTES / (4 * n)), rowCap, MAX_LOOP);
  let images = Math.max(1, Math.floor(rows / P));
  if (kept > 0) {
    const columns = Math.floor(limit / (4 * n)) - kept; // candidates [n, kept + images]
    if (columns < 1) {
      throw new RangeError(
        `explain: the top ${kept} images of n = ${n} latents need [${n}, ${kept + 1}] candidates, over this ` +
          `device's maxStorageBufferBindingSize (${limit}); ask for fewer top images`,
      );
    }
    images = Math.min(images, columns);
  }
  return images;
}

/** One batch's encoding: the dense code z [B·P, n] and/or the pre-activations [B·P, n] (before any ReLU). */
interface BatchEncoding {
  z: Tensor | null;
  pre: Tensor | null;
}

/**
 * Encodes images `ids` batch by batch (`per` images each) and hands each batch's encoding to `use` (which records
 * on the same recorder and returns what to read back once submitted). `want`: "code" the dense code only, "dense"
 * the pre-activations only, "both".
 */
async function forEachBatch<T>(
  sae: Sae,
  src: ImageSource,
  ids: readonly number[],
  per: number,
  want: "code" | "dense" | "both",
  onProgress: ExplainBatchOptions["onProgress"],
  use: (rec: Recorder, enc: BatchEncoding, batch: readonly number[], first: number) => () => Promise<T>,
): Promise<T[]> {
  const ctx = sae.ctx;
  const n = sae.config.nLatents;
  const P = src.grid[0] * src.grid[1];
  const out: T[] = [];
  for (let first = 0; first < ids.length; first += per) {
    const batch = ids.slice(first, first + per);
    const rows = batch.length * P;
    ctx.beginScope();
    try {
      const rec = ctx.recorder("sae explain");
      const got = await src.read(batch, rec);
      const x = got instanceof Float32Array ? ctx.upload(got, [rows, src.d], "f32", "sae.explain.x") : got;
      assertShape(`explain: the rows of images ${batch[0]} … ${batch.at(-1)}`, x.shape, [rows, src.d]);
      const code = saeEncode(rec, sae, x, { keep: want !== "code" });
      if (code.xc) rec.recycle(code.xc);
      const z = want === "dense" ? null : densify(rec, code, n, { out: rec.alloc([rows, n], "f32", "sae.z") });
      rec.recycle(code.values, code.indices);
      rec.recycle(x);
      const finish = use(rec, { z, pre: code.pre ?? null }, batch, first);
      await rec.submit();
      out.push(await finish());
    } finally {
      ctx.release(...ctx.endScope());
    }
    onProgress?.(Math.min(first + per, ids.length), ids.length);
  }
  return out;
}

/** Checks that `src` holds rows of the SAE's width and returns {@linkcode explainBatchImages} for it. */
function imagesPerBatch(sae: Sae, src: ImageSource, opts: ExplainBatchOptions, kept = 0): number {
  if (src.d !== sae.config.d) {
    throw new TypeError(`explain: the SAE reads d = ${sae.config.d} but the images' rows have d = ${src.d}`);
  }
  return explainBatchImages(sae.ctx.limits.maxStorageBufferBindingSize, {
    n: sae.config.nLatents,
    d: sae.config.d,
    positions: src.grid[0] * src.grid[1],
    batchRows: opts.batchRows,
    kept,
  });
}

function checkValues(what: string, v: string): void {
  if (v !== "code" && v !== "dense") throw new TypeError(`${what}: "${v}" must be "code" or "dense"`);
}

/** What {@linkcode featureStats} measured. */
export interface FeatureStatsResult {
  /** Latents n. */
  n: number;
  /** Images G and rows (G · positions) read. */
  images: number;
  rows: number;
  /** Rows where each latent fired in the TopK code (z > 0), [n]; frequency = counts[c] / rows. */
  counts: Uint32Array;
  /** Top images kept per latent. */
  k: number;
  /** What ranked them. */
  rank: ExplainValues;
  /** [n, k]: image ids by descending γ (ties to the lower id), their γ and their max. */
  ids: Uint32Array;
  scores: Float32Array;
  max: Float32Array;
}

/** Options of {@linkcode featureStats}. */
export interface FeatureStatsOptions extends ExplainBatchOptions {
  /** Top images kept per latent (default 8). */
  top?: number;
  /**
   * What γ averages: the TopK code (default) or ReLU of the dense pre-activation (Revelio's ranking; suits pooled
   * stores, one row per image, where the code of a single row is mostly zeros). Counts are of the code either way.
   */
  rank?: ExplainValues;
}

/**
 * Frequency and top images of every latent of `sae` over all images of `src`, in one encoding pass: per batch, the
 * [n, batch] γ and max on the GPU merged into running top-`top` lists ({@linkcode mergeTopImages}); GPU memory
 * O(n·top) plus one batch, whatever the number of images.
 */
export async function featureStats(
  sae: Sae,
  src: ImageSource,
  opts: FeatureStatsOptions = {},
): Promise<FeatureStatsResult> {
  const ctx = sae.ctx;
  const n = sae.config.nLatents;
  const G = src.images;
  const P = src.grid[0] * src.grid[1];
  if (G < 1) throw new RangeError("featureStats: the source has no images");
  const top = opts.top ?? 8;
  if (!Number.isInteger(top) || top < 1 || top > maxTopK(ctx.limits)) {
    throw new RangeError(`featureStats: top = ${opts.top} must be an integer in [1, ${maxTopK(ctx.limits)}]`);
  }
  const rank = opts.rank ?? "code";
  checkValues("featureStats: rank", rank);
  const dense = rank === "dense";
  const k = Math.min(top, G);
  const per = imagesPerBatch(sae, src, opts, k);
  const counts = ctx.persist(ctx.tensor([n], "u32", "sae.counts"));
  let run: TopImagesTensors | null = null;
  try {
    const ids = Array.from({ length: G }, (_, g) => g);
    await forEachBatch(sae, src, ids, per, dense ? "both" : "code", opts.onProgress, (rec, enc, batch, first) => {
      const T = run ? run.scores.shape[1] : 0;
      const C = T + batch.length;
      const cand = { mean: rec.alloc([n, C], "f32", "sae.cand_gamma"), max: rec.alloc([n, C], "f32", "sae.cand_max") };
      featureImageStats(rec, dense ? enc.pre! : enc.z!, cand, { positions: P, first: T, relu: dense });
      featureCounts(rec, enc.z!, counts);
      rec.recycle(enc.z!, ...(enc.pre ? [enc.pre] : []));
      const next = mergeTopImages(rec, cand, run, { base: first, k: Math.min(k, C) });
      rec.recycle(cand.mean, cand.max);
      if (run) rec.releaseAfterSubmit(run.scores, run.ids, run.max);
      run = { scores: ctx.persist(next.scores), ids: ctx.persist(next.ids), max: ctx.persist(next.max) };
      return () => Promise.resolve();
    });
    const last = run as TopImagesTensors | null;
    if (!last) throw new Error("featureStats: no batch ran");
    return {
      n,
      images: G,
      rows: G * P,
      counts: (await ctx.read(counts)).slice() as Uint32Array,
      k,
      rank,
      ids: (await ctx.read(last.ids)).slice() as Uint32Array,
      scores: (await ctx.readF32(last.scores)).slice(),
      max: (await ctx.readF32(last.max)).slice(),
    };
  } finally {
    const last = run as TopImagesTensors | null;
    ctx.release(counts, ...(last ? [last.scores, last.ids, last.max] : []));
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
 * Heat maps of (feature, image) pairs: each the feature's value at every position of the image's grid — its code z,
 * or with `values: "dense"` ReLU of its pre-activation (to draw what `featureStats({ rank: "dense" })` ranked).
 * Returns [pairs.length, H·W] in the order of `pairs`.
 */
export async function featureMaps(
  sae: Sae,
  src: ImageSource,
  pairs: readonly { feature: number; image: number }[],
  opts: ExplainBatchOptions & { values?: ExplainValues } = {},
): Promise<Float32Array> {
  const values = opts.values ?? "code";
  checkValues("featureMaps: values", values);
  const P = src.grid[0] * src.grid[1];
  const n = sae.config.nLatents;
  for (const { feature, image } of pairs) {
    if (!(feature >= 0 && feature < n && image >= 0 && image < src.images)) {
      throw new RangeError(`featureMaps: (feature ${feature}, image ${image}) outside [0, ${n}) × [0, ${src.images})`);
    }
  }
  const out = new Float32Array(pairs.length * P);
  const ids = uniqueSorted(pairs.map((p) => p.image));
  const per = imagesPerBatch(sae, src, opts);
  await forEachBatch(sae, src, ids, per, values, opts.onProgress, (rec, enc, batch) => {
    const slot = new Map(batch.map((g, i) => [g, i]));
    const mine = pairs.flatMap((p, j) => (slot.has(p.image) ? [j] : []));
    const jobs = rec.ctx.upload(
      mine.flatMap((j) => [slot.get(pairs[j].image)!, pairs[j].feature]),
      [mine.length, 2],
      "u32",
      "sae.map_jobs",
    );
    const maps = values === "dense"
      ? gatherFeatureMaps(rec, enc.pre!, jobs, P, { relu: true })
      : gatherFeatureMaps(rec, enc.z!, jobs, P);
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
  const per = imagesPerBatch(sae, src, opts);
  await forEachBatch(sae, src, ids, per, "code", opts.onProgress, (rec, { z }, batch) => {
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
    const t = maskIou(rec, z!, {
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
