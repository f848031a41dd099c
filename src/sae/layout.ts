/**
 * Layout prediction (Tinaz et al. §3.4, "the layout is decided before the first step finishes"): the SAE code of a
 * hook's Δ at an early step gives each position a top feature; the positions whose top feature belongs to a concept
 * set predict where that concept will be drawn, scored by IoU against a mask. Argmax and counts run in
 * kernels/sae_layout.wgsl; runtime-agnostic.
 *
 * ```ts ignore
 * const r = await predictLayout(pipe, sae, { prompt: "a dog on the beach", hook: "up_blocks.1.attentions.0.delta" });
 * r.top; // Int32Array [H·W]: the top feature of each position (−1 where nothing fires)
 * ```
 * @module
 */
import src from "../../kernels/sae_layout.wgsl" with { type: "text" };
import type { GpuContext } from "../gpu/context.ts";
import { defineKernels } from "../gpu/kernel.ts";
import { grid1d, type Recorder } from "../gpu/recorder.ts";
import { fmtShape, numel, type Tensor } from "../gpu/tensor.ts";
import { type Half, Hooks } from "../hooks/hooks.ts";
import { grid1dFor, requireDtype } from "../ops/_alloc.ts";
import type { StableDiffusionPipeline } from "../pipeline/stable_diffusion.ts";
import type { Sae } from "./model.ts";
import { type ActivationLayout, encodePositions } from "./positions.ts";
import type { SparseCode } from "./sparse.ts";
import { DEFAULT_STEER_HOOK, maskAtGrid, saeHalf } from "./steer.ts";

const K = defineKernels("sae_layout.wgsl", src, ["top_feature", "iou"]);
const WG = 64;

/**
 * The top feature of each row of a code [rows, k]: the id of its largest value when that value is > 0 (ties: the
 * lower id), else −1 (nothing fires). i32 [rows].
 */
export function topFeature(rec: Recorder, code: SparseCode): Tensor {
  requireDtype("topFeature", code.values);
  requireDtype("topFeature", code.indices, ["u32"]);
  if (code.values.shape.length !== 2) {
    throw new TypeError(`topFeature: code ${fmtShape(code.values.shape)} is not [rows, k]`);
  }
  const [rows, k] = code.values.shape;
  const top = rec.alloc([rows], "i32", "sae.layout.top");
  const grid = grid1dFor(rec, rows, WG);
  rec.dispatch(K.top_feature, {
    read: { values: code.values, indices: code.indices },
    write: { top },
    params: { rows, hw: 1, k, nset: 0, images: 1, row: grid[0], set_stride: 0 },
    grid,
    overrides: { WG },
  });
  return top;
}

/**
 * Per image of a top-feature map `top` (i32 [images·hw]): u32 [images, 4] = (|P ∩ M|, |P ∪ M|, |P|, |M|) with
 * P = {p : top[p] ∈ concepts} and M = {p : mask[p] ≥ 0.5}; `mask` [hw] at the grid. `concepts` is i32 [nset] (one
 * set for every image), i32 [images, nset] (a set per image; pad shorter sets with −1), or null (the empty set).
 * All images in one dispatch.
 */
export function layoutCounts(
  rec: Recorder,
  top: Tensor,
  concepts: Tensor | null,
  mask: Tensor,
  hw: number,
): Tensor {
  requireDtype("layoutCounts", top, ["i32"]);
  if (concepts) requireDtype("layoutCounts", concepts, ["i32"]);
  requireDtype("layoutCounts", mask);
  const rows = numel(top.shape);
  if (!Number.isInteger(hw) || hw < 1 || rows % hw) {
    throw new RangeError(`layoutCounts: top map ${fmtShape(top.shape)} is not a whole number of ${hw}-position images`);
  }
  if (numel(mask.shape) !== hw) {
    throw new TypeError(`layoutCounts: mask ${fmtShape(mask.shape)} must have ${hw} positions`);
  }
  const images = rows / hw;
  const cs = concepts?.shape ?? [0];
  if ((cs.length === 2 && cs[0] !== images) || cs.length > 2 || cs.length < 1) {
    throw new TypeError(
      `layoutCounts: concepts ${fmtShape(cs)} must be [nset] or [${images}, nset] for ${images} images of ${hw}`,
    );
  }
  const nset = cs.at(-1)!;
  const counts = rec.alloc([images, 4], "u32", "sae.layout.counts");
  const grid = grid1d(images, rec.ctx.limits.maxComputeWorkgroupsPerDimension);
  rec.dispatch(K.iou, {
    read: { top_in: top, concepts: concepts && nset ? concepts : rec.ctx.placeholder, mask },
    write: { counts },
    params: { rows, hw, k: 0, nset, images, row: grid[0], set_stride: cs.length === 2 ? nset : 0 },
    grid,
    overrides: { WG },
  });
  return counts;
}

/** IoU of a predicted set of positions with a mask. */
export interface LayoutIou {
  /** The concept set scored. */
  features: number[];
  intersection: number;
  union: number;
  /** Positions predicted (top feature in the set). */
  predicted: number;
  /** Positions of the mask (≥ 0.5 at the grid). */
  mask: number;
  /** intersection / union (0 when both sets are empty). */
  iou: number;
}

/** What {@linkcode readLayout} finds, per image of the batch range. */
export interface LayoutResult {
  grid: [number, number];
  /** Top feature per position, [images, H, W] row-major (−1: nothing fires). */
  top: Int32Array;
  /** Per image: positions per top feature, largest first (−1 included when present). */
  area: { id: number; positions: number }[][];
  /** Per image, when a mask was given. */
  iou?: LayoutIou[];
}

/** Options of {@linkcode readLayout}. */
export interface ReadLayoutOptions {
  layout?: ActivationLayout;
  /** Concept set C for the IoU (default: the mask's most frequent top feature, per image). */
  features?: readonly number[];
  /** A mask in [0, 1] ([H·W] at the grid, or any [h, w] image, resized on the GPU); thresholded at 0.5. */
  mask?: Tensor;
}

/**
 * Encodes `x` ([B, C, H, W] by default) with the SAE and reads its top-feature map, areas and mask IoU back: the
 * counts of every image come from one dispatch (one submit when `features` is given, two otherwise).
 */
export async function readLayout(
  ctx: GpuContext,
  sae: Sae,
  x: Tensor,
  opts: ReadLayoutOptions = {},
): Promise<LayoutResult> {
  const rec = ctx.recorder("sae layout");
  const code = encodePositions(rec, sae, x, { layout: opts.layout });
  const { images, hw, grid } = code;
  const top = topFeature(rec, code);
  rec.recycle(code.values, code.indices);
  const mask = opts.mask ? maskAtGrid(rec, opts.mask, grid, "readLayout: mask") : undefined;
  const own: Tensor[] = [];
  if (mask && mask !== opts.mask) own.push(ctx.persist(mask));
  const topKept = ctx.persist(top);
  own.push(topKept);
  try {
    let sets: number[][] | undefined, counts: Tensor | undefined;
    const count = (r: Recorder, concepts: Tensor | null) => {
      if (concepts) own.push(concepts);
      own.push(counts = ctx.persist(layoutCounts(r, topKept, concepts, mask!, hw)));
    };
    if (mask && opts.features) {
      // one set for every image: counted with the map
      sets = Array.from({ length: images }, () => [...opts.features!]);
      const n = opts.features.length;
      count(rec, n ? ctx.upload(Int32Array.from(opts.features), [n], "i32", "sae.layout.concepts") : null);
    }
    await rec.submit();
    const map = new Int32Array(await ctx.read(topKept) as Int32Array);
    const area = [];
    for (let i = 0; i < images; i++) {
      const n = new Map<number, number>();
      for (let p = 0; p < hw; p++) n.set(map[i * hw + p], (n.get(map[i * hw + p]) ?? 0) + 1);
      area.push(
        [...n].map(([id, positions]) => ({ id, positions })).sort((a, b) => b.positions - a.positions || a.id - b.id),
      );
    }
    const result: LayoutResult = { grid, top: map, area };
    if (!mask) return result;
    if (!sets) {
      // a set per image (its dominant feature in the mask), padded with −1: all images in one dispatch
      const maskHost = await ctx.readF32(mask);
      sets = Array.from({ length: images }, (_, i) => dominantFeature(map.subarray(i * hw, (i + 1) * hw), maskHost));
      const width = Math.max(0, ...sets.map((s) => s.length));
      const table = new Int32Array(images * width).fill(-1);
      sets.forEach((s, i) => table.set(s, i * width));
      const r2 = ctx.recorder("sae layout iou");
      count(r2, width ? ctx.upload(table, [images, width], "i32", "sae.layout.concepts") : null);
      await r2.submit();
    }
    const c = await ctx.read(counts!) as Uint32Array;
    result.iou = sets.map((features, i) => {
      const [intersection, union, predicted, m] = c.subarray(4 * i, 4 * i + 4);
      return { features, intersection, union, predicted, mask: m, iou: union > 0 ? intersection / union : 0 };
    });
    return result;
  } finally {
    ctx.release(...own);
  }
}

/** The most frequent non-negative top feature inside a mask (≥ 0.5), as a one-id set (empty when none). */
function dominantFeature(top: ArrayLike<number>, mask: ArrayLike<number>): number[] {
  const n = new Map<number, number>();
  for (let p = 0; p < top.length; p++) if (mask[p] >= 0.5 && top[p] >= 0) n.set(top[p], (n.get(top[p]) ?? 0) + 1);
  const best = [...n].sort((a, b) => b[1] - a[1] || a[0] - b[0])[0];
  return best ? [best[0]] : [];
}

/** Options of {@linkcode predictLayout}. */
export interface PredictLayoutOptions extends Omit<ReadLayoutOptions, "layout"> {
  prompt: string;
  /** Hook point (default `mid_block.attentions.0.delta`). */
  hook?: string;
  /** The step whose Δ is read (default 0: before the first step finishes). */
  step?: number;
  /** Sampling steps (default 50). */
  steps?: number;
  seed?: number;
  guidance?: number;
  /** CFG half read (default "cond", or "both" when guidance ≤ 1; cond/uncond without CFG is an error). */
  half?: Half;
}

/**
 * Generates `prompt`, capturing the hook's Δ at `step`, and reads its layout (see {@linkcode readLayout}); the
 * generated image's pixels come back too (RGBA8), to compare the prediction with what was drawn.
 */
export async function predictLayout(
  pipe: StableDiffusionPipeline,
  sae: Sae,
  opts: PredictLayoutOptions,
): Promise<LayoutResult & { image?: { pixels: Uint32Array; width: number; height: number } }> {
  const ctx = pipe.ctx;
  const step = opts.step ?? 0, steps = opts.steps ?? 50, guidance = opts.guidance ?? 7.5;
  if (!Number.isInteger(step) || step < 0 || step >= steps) {
    throw new RangeError(`predictLayout: step ${step} is not one of the ${steps} sampling steps`);
  }
  const hooks = new Hooks();
  const hook = opts.hook ?? DEFAULT_STEER_HOOK;
  const cap = hooks.capture(hook, { steps: [step], half: saeHalf(opts.half, guidance, "predictLayout: half") });
  const r = await pipe.generate({ prompt: opts.prompt, steps, guidance, seed: opts.seed ?? 0, hooks });
  const [, , H, W] = r.image.shape;
  const image = r.pixels ? { pixels: r.pixels.subarray(0, H * W), width: W, height: H } : undefined;
  ctx.release(...new Set([r.latents, r.image]));
  try {
    const rec = cap.at(step);
    if (!rec) throw new Error(`predictLayout: hook "${hook}" did not fire at step ${step}`);
    const layout = rec.tensor.shape.length === 4 ? "nchw" : "bnc";
    return { ...(await readLayout(ctx, sae, rec.tensor, { ...opts, layout })), image };
  } finally {
    cap.release(ctx);
  }
}
