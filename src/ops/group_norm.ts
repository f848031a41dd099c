/**
 * GroupNorm (PyTorch semantics) with an optional fused SiLU, as in every resnet block of the SD U-Net and VAE.
 * @module
 */
import src from "../../kernels/group_norm.wgsl" with { type: "text" };
import bwdSrc from "../../kernels/group_norm_bwd.wgsl" with { type: "text" };
import { defineKernels } from "../gpu/kernel.ts";
import { grid1d, type Recorder } from "../gpu/recorder.ts";
import { assertShape, fmtShape, numel, type Tensor } from "../gpu/tensor.ts";
import { requireDtype } from "./_alloc.ts";
import { accumOverride, type AccumulateOptions, clearTensor, gradTensor } from "./_grad.ts";
import { normParamGrads } from "./_norm_grad.ts";

const kernels = defineKernels("group_norm.wgsl", src, ["stats_chunk", "merge", "apply"]);
const bwdKernels = defineKernels("group_norm_bwd.wgsl", bwdSrc, ["row_partial", "group_means", "dx_apply"]);
const WG = 256;
/** Elements one `stats_chunk` workgroup reduces: WG · ITEMS, with ITEMS read from the WGSL (its register array). */
const CHUNK = WG * Number(/const ITEMS: u32 = (\d+)u;/.exec(src)![1]);

/** Options of {@linkcode groupNorm}. */
export interface GroupNormOptions {
  /** Per-channel scale, shape [C]. */
  weight: Tensor;
  /** Per-channel shift, shape [C]. */
  bias: Tensor;
  /** Number of groups; must divide C. */
  groups: number;
  /** Added to the variance inside the square root. Default 1e-5 (PyTorch's). */
  eps?: number;
  /** Apply SiLU (x·sigmoid(x)) after the affine, fused. */
  silu?: boolean;
  /** Write here instead of allocating; must not share a buffer with `x`. */
  out?: Tensor;
  /** Receives per-group [mean, rstd], shape [B, groups, 2], for the backward pass (scratch otherwise). */
  stats?: Tensor;
}

/**
 * GroupNorm of `x` [B, C, ...spatial] (NCHW; spatial may be empty): biased variance per (sample, group), eps inside
 * the square root, then a per-channel affine and optionally SiLU. Statistics are two-pass per chunk and merged with
 * Chan's rule, so long groups (SD: 10 channels × 64·64) stay accurate.
 *
 * ```ts ignore
 * const h = groupNorm(rec, x, { weight, bias, groups: 32, eps: 1e-5, silu: true });
 * ```
 */
export function groupNorm(rec: Recorder, x: Tensor, opts: GroupNormOptions): Tensor {
  const { weight, bias, groups, eps = 1e-5, silu = false } = opts;
  for (const t of [x, weight, bias]) {
    if (t.dtype !== "f32") throw new TypeError(`groupNorm: "${t.label}" is ${t.dtype}, expected f32`);
  }
  if (x.shape.length < 2) throw new TypeError(`groupNorm: x ${fmtShape(x.shape)} needs at least [B, C]`);
  const [b, c] = x.shape;
  if (!Number.isInteger(groups) || groups < 1 || c % groups !== 0) {
    throw new RangeError(`groupNorm: groups = ${groups} does not divide the ${c} channels of x ${fmtShape(x.shape)}`);
  }
  assertShape(`groupNorm weight (x is ${fmtShape(x.shape)})`, weight.shape, [c]);
  assertShape(`groupNorm bias (x is ${fmtShape(x.shape)})`, bias.shape, [c]);
  if (!(eps >= 0)) throw new RangeError(`groupNorm: eps must be ≥ 0, got ${eps}`);
  const s = numel(x.shape.slice(2));
  const n = (c / groups) * s;
  const total = numel(x.shape);
  const nGroups = b * groups;
  if (opts.out) {
    assertShape("groupNorm out", opts.out.shape, x.shape);
    if (opts.out.buffer === x.buffer) throw new TypeError(`groupNorm: out must not share a buffer with x (in-place)`);
  }
  if (opts.stats) assertShape("groupNorm stats", opts.stats.shape, [b, groups, 2]);
  const out = opts.out ?? rec.alloc(x.shape, "f32", "group_norm");
  if (total === 0) return out;
  const stats = opts.stats ?? rec.alloc([b, groups, 2], "f32", "group_norm.stats");
  const chunks = Math.ceil(n / CHUNK);
  const partial = rec.alloc([nGroups, chunks, 2], "f32", "group_norm.partial");
  rec.releaseAfterSubmit(partial);
  if (!opts.stats) rec.releaseAfterSubmit(stats);

  const maxDim = rec.ctx.limits.maxComputeWorkgroupsPerDimension;
  const buffers = { read: { x, weight, bias }, write: { partial, stats, out } };
  const base = { n, s, c, groups: nGroups, chunks, total, eps };
  const steps = [
    [kernels.stats_chunk, nGroups * chunks, { WG }],
    [kernels.merge, nGroups, { WG }],
    [kernels.apply, Math.ceil(total / WG), { WG, SILU: silu ? 1 : 0 }],
  ] as const;
  for (const [kernel, workgroups, overrides] of steps) {
    const grid = grid1d(workgroups, maxDim);
    rec.dispatch(kernel, { ...buffers, params: { ...base, row: grid[0] }, grid, overrides });
  }
  return out;
}

/** Inputs of {@linkcode groupNormBackward}. */
export interface GroupNormBackwardInputs {
  /** The forward's input, [B, C, ...spatial]. */
  x: Tensor;
  /** dL/d(forward output), shaped like `x`. */
  dout: Tensor;
  /** The forward's per-group [mean, rstd], [B, groups, 2] (its `stats` option). */
  stats: Tensor;
  /** The forward's per-channel scale, [C]. */
  weight: Tensor;
}

/** Options of {@linkcode groupNormBackward}: the forward's settings and the gradients to write. */
export interface GroupNormBackwardOptions extends AccumulateOptions {
  /** Number of groups, as in the forward. */
  groups: number;
  /** The forward's eps. Not needed (rstd in `stats` includes it); accepted so forward options can be passed on. */
  eps?: number;
  /** The forward fused SiLU after the affine: its derivative is applied to `dout` first (needs `bias`). */
  silu?: boolean;
  /** The forward's per-channel shift, [C]; read only with `silu`, to recompute the pre-activation. */
  bias?: Tensor;
  /** dL/dx, shaped like `x`; not computed when absent. */
  dx?: Tensor;
  /** dL/dweight, [C]; not computed when absent. */
  dweight?: Tensor;
  /** dL/dbias, [C]; not computed when absent. */
  dbias?: Tensor;
}

/** The gradients {@linkcode groupNormBackward} wrote. */
export interface GroupNormGradients {
  /** The `dx` given, when it was. */
  dx?: Tensor;
  /** The `dweight` given, when it was. */
  dweight?: Tensor;
  /** The `dbias` given, when it was. */
  dbias?: Tensor;
}

/** Elements one row_partial invocation adds serially per chunk (the rest of the chunk is a tree). */
const BWD_PER = 16;

/**
 * Gradients of {@linkcode groupNorm} from `dout` and the forward's saved `stats`: with `x̂ = (x − mean)·rstd` and
 * `g = dout` (times SiLU's derivative at `x̂·w + b` when `silu`), `dbias[c] = Σ g`, `dweight[c] = Σ g·x̂` over
 * batch and space, and `dx = rstd·(g·w − mean(g·w) − x̂·mean(g·w·x̂))` with means over each group. Only the
 * gradients given are computed; they accumulate unless `accumulate` is false. See docs/norms.md.
 *
 * ```ts ignore
 * const stats = ctx.tensor([2, 32, 2]);
 * const h = groupNorm(rec, x, { weight, bias, groups: 32, eps: 1e-5, silu: true, stats });
 * // … later, with dh = dL/dh:
 * groupNormBackward(rec, { x, dout: dh, stats, weight }, { groups: 32, silu: true, bias, dx, dweight, dbias });
 * ```
 */
export function groupNormBackward(
  rec: Recorder,
  inputs: GroupNormBackwardInputs,
  opts: GroupNormBackwardOptions,
): GroupNormGradients {
  const what = "groupNorm backward";
  const { x, dout, stats, weight } = inputs;
  const { groups, eps = 0, silu = false, bias } = opts;
  for (const t of [x, dout, stats, weight, ...(bias ? [bias] : [])]) requireDtype(what, t);
  if (x.shape.length < 2) throw new TypeError(`${what}: x ${fmtShape(x.shape)} needs at least [B, C]`);
  const [b, c] = x.shape;
  if (!Number.isInteger(groups) || groups < 1 || c % groups !== 0) {
    throw new RangeError(`${what}: groups = ${groups} does not divide the ${c} channels of x ${fmtShape(x.shape)}`);
  }
  if (!(eps >= 0)) throw new RangeError(`${what}: eps must be ≥ 0, got ${eps}`);
  const xs = `(x is ${fmtShape(x.shape)})`;
  assertShape(`${what}: dout "${dout.label}" ${xs}`, dout.shape, x.shape);
  assertShape(`${what}: stats "${stats.label}" ${xs}, groups = ${groups}`, stats.shape, [b, groups, 2]);
  assertShape(`${what}: weight "${weight.label}" ${xs}`, weight.shape, [c]);
  if (bias) assertShape(`${what}: bias "${bias.label}" ${xs}`, bias.shape, [c]);
  if (silu && !bias) throw new TypeError(`${what}: silu needs the forward's bias to recompute the pre-activation`);
  const reads = [x, dout, stats, weight, ...(bias ? [bias] : [])];
  const dx = gradTensor(what, "dx", opts.dx, x.shape, reads);
  const dweight = gradTensor(what, "dweight", opts.dweight, [c], reads);
  const dbias = gradTensor(what, "dbias", opts.dbias, [c], reads);
  const out: GroupNormGradients = { ...(dx && { dx }), ...(dweight && { dweight }), ...(dbias && { dbias }) };
  const accum = accumOverride(opts);
  const total = numel(x.shape);
  if (total === 0) { // no elements: dx is empty and the parameter gradients are sums of nothing
    if (!accum) { for (const t of [dweight, dbias]) if (t) clearTensor(rec, t); }
    return out;
  }
  if (!dx && !dweight && !dbias) return out;

  const s = numel(x.shape.slice(2));
  const rows = b * c;
  let ty = 1;
  while (ty < WG && ty * BWD_PER < s) ty *= 2;
  const tx = WG / ty;
  const chunks = Math.ceil(s / (ty * BWD_PER));
  const tiles = Math.ceil(rows / tx);
  const maxDim = rec.ctx.limits.maxComputeWorkgroupsPerDimension;
  const base = { s, c, cpg: c / groups, groups, rows, chunks, per: BWD_PER, tiles };
  const read = { x, dout, weight, stats, bias: bias ?? rec.ctx.placeholder };
  const SILU = silu ? 1 : 0;

  const partial = rec.alloc([b * chunks, 2, c], "f32", "group_norm_bwd.partial");
  // row_partial and dx_apply share one split into (TX rows × a chunk of S) per workgroup
  const rowGrid = grid1d(chunks * tiles, maxDim);
  const rowParams = { ...base, work: chunks * tiles, row: rowGrid[0] };
  rec.dispatch(bwdKernels.row_partial, {
    read,
    write: { partial },
    params: rowParams,
    grid: rowGrid,
    overrides: { TX: tx, TY: ty, SILU },
  });
  normParamGrads(rec, partial, b * chunks, c, { dweight, dbias }, accum);
  if (dx) {
    const gmean = rec.alloc([b * groups, 2], "f32", "group_norm_bwd.gmean");
    const grid = grid1d(b * groups, maxDim);
    rec.dispatch(bwdKernels.group_means, {
      read: { weight, partial_in: partial },
      write: { gmean },
      params: { ...base, work: b * groups, row: grid[0] },
      grid,
    });
    rec.dispatch(bwdKernels.dx_apply, {
      read: { ...read, gmean_in: gmean },
      write: { dx },
      params: rowParams,
      grid: rowGrid,
      overrides: { TX: tx, TY: ty, SILU, ACCUM: accum },
    });
    rec.recycle(gmean);
  }
  rec.recycle(partial);
  return out;
}
