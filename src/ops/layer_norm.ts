/**
 * LayerNorm over the last dimension (CLIP's text encoder, the U-Net's transformer blocks).
 * @module
 */
import src from "../../kernels/layer_norm.wgsl" with { type: "text" };
import { defineKernel } from "../gpu/kernel.ts";
import { grid1d, type Recorder } from "../gpu/recorder.ts";
import { assertShape, fmtShape, numel, type Tensor } from "../gpu/tensor.ts";

const kernel = defineKernel("layer_norm.wgsl", src);

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
