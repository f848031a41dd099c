/**
 * LayerNorm over the last dimension (CLIP's text encoder, the U-Net's transformer blocks).
 * @module
 */
import src from "../../kernels/layer_norm.wgsl" with { type: "text" };
import bwdSrc from "../../kernels/layer_norm_bwd.wgsl" with { type: "text" };
import { defineKernel, defineKernels } from "../gpu/kernel.ts";
import { grid1d, type Recorder } from "../gpu/recorder.ts";
import { assertShape, fmtShape, numel, type Tensor } from "../gpu/tensor.ts";
import { requireDtype } from "./_alloc.ts";
import { accumOverride, type AccumulateOptions, clearTensor, gradTensor } from "./_grad.ts";
import { normParamGrads } from "./_norm_grad.ts";

const kernel = defineKernel("layer_norm.wgsl", src);
const bwdKernels = defineKernels("layer_norm_bwd.wgsl", bwdSrc, ["dx_rows", "col_partial"]);

/** Options of {@linkcode layerNorm}. */
export interface LayerNormOptions {
  /** Scale, shape [D]. */
  weight: Tensor;
  /** Shift, shape [D]. */
  bias: Tensor;
  /** Added to the variance inside the square root. Default 1e-5 (PyTorch's). */
  eps?: number;
  /** Write here instead of allocating; must not share a buffer with `x`. */
  out?: Tensor;
  /** Receives per-row [mean, rstd], shape [...x.shape.slice(0, -1), 2], for the backward pass (scratch otherwise). */
  stats?: Tensor;
}

/** Workgroup size for rows of length d: about four elements per invocation, 64…256 invocations. */
function workgroupFor(d: number): number {
  return d <= 256 ? 64 : d <= 512 ? 128 : 256;
}

/**
 * LayerNorm of `x` [...rows, D] over its last dimension: biased variance, eps inside the square root, affine per
 * element of the last dimension. Any number of rows.
 *
 * ```ts ignore
 * const h = layerNorm(rec, x, { weight, bias, eps: 1e-5 }); // x [2, 77, 768]
 * ```
 */
export function layerNorm(rec: Recorder, x: Tensor, opts: LayerNormOptions): Tensor {
  const { weight, bias, eps = 1e-5 } = opts;
  for (const t of [x, weight, bias]) {
    if (t.dtype !== "f32") throw new TypeError(`layerNorm: "${t.label}" is ${t.dtype}, expected f32`);
  }
  if (x.shape.length < 1) throw new TypeError(`layerNorm: x ${fmtShape(x.shape)} has no last dimension`);
  const d = x.shape[x.shape.length - 1];
  const rows = numel(x.shape.slice(0, -1));
  assertShape(`layerNorm weight (x is ${fmtShape(x.shape)})`, weight.shape, [d]);
  assertShape(`layerNorm bias (x is ${fmtShape(x.shape)})`, bias.shape, [d]);
  if (!(eps >= 0)) throw new RangeError(`layerNorm: eps must be ≥ 0, got ${eps}`);
  const statsShape = [...x.shape.slice(0, -1), 2];
  if (opts.out) {
    assertShape("layerNorm out", opts.out.shape, x.shape);
    if (opts.out.buffer === x.buffer) throw new TypeError(`layerNorm: out must not share a buffer with x (in-place)`);
  }
  if (opts.stats) assertShape("layerNorm stats", opts.stats.shape, statsShape);
  const out = opts.out ?? rec.alloc(x.shape, "f32", "layer_norm");
  if (d === 0 || rows === 0) return out;
  const stats = opts.stats ?? rec.alloc(statsShape, "f32", "layer_norm.stats");
  if (!opts.stats) rec.releaseAfterSubmit(stats);
  const grid = grid1d(rows, rec.ctx.limits.maxComputeWorkgroupsPerDimension);
  rec.dispatch(kernel, {
    read: { x, weight, bias },
    write: { stats, out },
    params: { rows, d, row: grid[0], eps },
    grid,
    overrides: { WG: workgroupFor(d) },
  });
  return out;
}

/** Inputs of {@linkcode layerNormBackward}. */
export interface LayerNormBackwardInputs {
  /** The forward's input, [...rows, D]. */
  x: Tensor;
  /** dL/d(forward output), shaped like `x`. */
  dout: Tensor;
  /** The forward's per-row [mean, rstd], [...rows, 2] (its `stats` option). */
  stats: Tensor;
  /** The forward's scale, [D]. */
  weight: Tensor;
}

/** Options of {@linkcode layerNormBackward}: the gradients to write. */
export interface LayerNormBackwardOptions extends AccumulateOptions {
  /** The forward's eps. Not needed (rstd in `stats` includes it); accepted so forward options can be passed on. */
  eps?: number;
  /** dL/dx, shaped like `x`; not computed when absent. */
  dx?: Tensor;
  /** dL/dweight, [D]; not computed when absent. */
  dweight?: Tensor;
  /** dL/dbias, [D]; not computed when absent. */
  dbias?: Tensor;
}

/** The gradients {@linkcode layerNormBackward} wrote. */
export interface LayerNormGradients {
  /** The `dx` given, when it was. */
  dx?: Tensor;
  /** The `dweight` given, when it was. */
  dweight?: Tensor;
  /** The `dbias` given, when it was. */
  dbias?: Tensor;
}

/** col_partial's workgroup: 32 neighbouring columns × 8 lanes over rows, each lane adding 16 rows per chunk. */
const COL = { TX: 32, TY: 8, PER: 16 };

/**
 * Gradients of {@linkcode layerNorm} from `dout` and the forward's saved `stats`: with `x̂ = (x − mean)·rstd`,
 * `dx = rstd·(dout·w − mean(dout·w) − x̂·mean(dout·w·x̂))` (means over the row), `dweight = Σ_rows dout·x̂`,
 * `dbias = Σ_rows dout`. Only the gradients given are computed; they accumulate unless `accumulate` is false.
 *
 * ```ts ignore
 * const stats = ctx.tensor([2, 77, 2]);
 * const h = layerNorm(rec, x, { weight, bias, stats }); // x [2, 77, 768]
 * // … later, with dh = dL/dh:
 * layerNormBackward(rec, { x, dout: dh, stats, weight }, { dx, dweight, dbias });
 * ```
 */
export function layerNormBackward(
  rec: Recorder,
  inputs: LayerNormBackwardInputs,
  opts: LayerNormBackwardOptions = {},
): LayerNormGradients {
  const what = "layerNorm backward";
  const { x, dout, stats, weight } = inputs;
  const { eps = 0 } = opts;
  for (const t of [x, dout, stats, weight]) requireDtype(what, t);
  if (x.shape.length < 1) throw new TypeError(`${what}: x ${fmtShape(x.shape)} has no last dimension`);
  if (!(eps >= 0)) throw new RangeError(`${what}: eps must be ≥ 0, got ${eps}`);
  const d = x.shape[x.shape.length - 1];
  const rows = numel(x.shape.slice(0, -1));
  const xs = `(x is ${fmtShape(x.shape)})`;
  assertShape(`${what}: dout "${dout.label}" ${xs}`, dout.shape, x.shape);
  assertShape(`${what}: stats "${stats.label}" ${xs}`, stats.shape, [...x.shape.slice(0, -1), 2]);
  assertShape(`${what}: weight "${weight.label}" ${xs}`, weight.shape, [d]);
  const reads = [x, dout, stats, weight];
  const dx = gradTensor(what, "dx", opts.dx, x.shape, reads);
  const dweight = gradTensor(what, "dweight", opts.dweight, [d], reads);
  const dbias = gradTensor(what, "dbias", opts.dbias, [d], reads);
  const out: LayerNormGradients = { ...(dx && { dx }), ...(dweight && { dweight }), ...(dbias && { dbias }) };
  const accum = accumOverride(opts);
  if (rows === 0 || d === 0) { // dx is empty; the parameter gradients are sums over no rows
    if (!accum) { for (const t of [dweight, dbias]) if (t) clearTensor(rec, t); }
    return out;
  }
  const maxDim = rec.ctx.limits.maxComputeWorkgroupsPerDimension;
  const tiles = Math.ceil(d / COL.TX);
  const chunks = Math.ceil(rows / (COL.TY * COL.PER));
  const base = { rows, d, chunks, per: COL.PER, tiles };
  if (dx) {
    let tpr = 32; // about 16 elements per invocation, 32…256 invocations per row
    while (tpr < 256 && tpr * 16 < d) tpr *= 2;
    const grid = grid1d(Math.ceil(rows / (256 / tpr)), maxDim);
    rec.dispatch(bwdKernels.dx_rows, {
      read: { x, dout, weight, stats },
      write: { dx },
      params: { ...base, work: 0, row: grid[0] },
      grid,
      overrides: { WG: 256, TPR: tpr, ACCUM: accum },
    });
  }
  if (dweight || dbias) {
    const partial = rec.alloc([chunks, 2, d], "f32", "layer_norm_bwd.partial");
    const grid = grid1d(chunks * tiles, maxDim);
    rec.dispatch(bwdKernels.col_partial, {
      read: { x, dout, stats },
      write: { partial },
      params: { ...base, work: chunks * tiles, row: grid[0] },
      grid,
      overrides: { TX: COL.TX, TY: COL.TY },
    });
    normParamGrads(rec, partial, chunks, d, { dweight, dbias }, accum);
    rec.recycle(partial);
  }
  return out;
}
