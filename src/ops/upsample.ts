/**
 * Nearest-neighbour upsampling of NCHW tensors by an integer factor (diffusers' `Upsample2D` interpolation), and
 * its gradient.
 * @module
 */
import src from "../../kernels/upsample.wgsl" with { type: "text" };
import bwdSrc from "../../kernels/upsample_bwd.wgsl" with { type: "text" };
import { defineKernel } from "../gpu/kernel.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { assertShape, fmtShape, numel, type Tensor } from "../gpu/tensor.ts";
import { grid1dFor, outputTensor, requireDtype, WORD_DTYPES } from "./_alloc.ts";
import { accumOverride, type AccumulateOptions, gradTensor } from "./_grad.ts";

const kernel = defineKernel("upsample.wgsl", src);
const bwdKernel = defineKernel("upsample_bwd.wgsl", bwdSrc);
/** Largest scale the backward takes: an invocation sums 4·s² values (lavapipe stops one after 65,535 iterations). */
const MAX_BWD_SCALE = 64;
const WG = 256;

/** Options of {@linkcode upsampleNearest}. */
export interface UpsampleOptions {
  /** Integer scale factor for both height and width (default 2). */
  scale?: number;
  /** Write here instead of allocating (must not share a buffer with `x`). */
  out?: Tensor;
}

/**
 * `[..., H, W] → [..., s·H, s·W]`, each pixel repeated s×s times (`F.interpolate(x, scale_factor=s,
 * mode="nearest")`). Leading dimensions (batch, channels) are kept; f32, i32 or u32.
 *
 * ```ts ignore
 * const up = upsampleNearest(rec, h); // [2, 1280, 8, 8] → [2, 1280, 16, 16]
 * ```
 */
export function upsampleNearest(rec: Recorder, x: Tensor, opts: UpsampleOptions = {}): Tensor {
  requireDtype("upsampleNearest", x, WORD_DTYPES);
  const s = opts.scale ?? 2;
  if (!Number.isInteger(s) || s < 1) {
    throw new RangeError(`upsampleNearest: scale must be a positive integer, got ${s}`);
  }
  if (x.shape.length < 2) {
    throw new TypeError(`upsampleNearest: input ${fmtShape(x.shape)} needs at least 2 dimensions ([..., H, W])`);
  }
  const [h, w] = x.shape.slice(-2);
  const shape = [...x.shape.slice(0, -2), h * s, w * s];
  const out = outputTensor(rec, "upsampleNearest", shape, x.dtype, opts.out, [x]);
  const n = numel(shape);
  const grid = grid1dFor(rec, Math.ceil(n / 4), WG);
  const overrides = { WG, ALIGNED: (s * w) % 4 === 0 ? 1 : 0 };
  rec.dispatch(kernel, { read: { x }, write: { out }, params: { n, row: grid[0], h, w, s }, grid, overrides });
  return out;
}

/** Options of {@linkcode upsampleNearestBackward}. */
export interface UpsampleBackwardOptions extends AccumulateOptions {
  /** dL/dx, `[..., H, W]`; its shape fixes H and W. Nothing is computed when absent. */
  dx?: Tensor;
  /** The forward's integer scale factor (default 2, at most 64). */
  scale?: number;
}

/**
 * Gradient of {@linkcode upsampleNearest}: each input pixel gets the sum of the s×s output pixels it was copied to,
 * `dx[..., y, x] += Σ_{i,j<s} dy[..., s·y + i, s·x + j]`. Returns what it wrote; `accumulate: false` overwrites.
 *
 * ```ts ignore
 * upsampleNearestBackward(rec, dUp, { dx: dh }); // [2, 640, 64, 64] → [2, 640, 32, 32]
 * ```
 */
export function upsampleNearestBackward(
  rec: Recorder,
  dy: Tensor,
  opts: UpsampleBackwardOptions = {},
): { dx?: Tensor } {
  const what = "upsampleNearest backward";
  requireDtype(what, dy, ["f32"]);
  const s = opts.scale ?? 2;
  if (!Number.isInteger(s) || s < 1 || s > MAX_BWD_SCALE) {
    throw new RangeError(`${what}: scale must be an integer in [1, ${MAX_BWD_SCALE}], got ${s}`);
  }
  if (!opts.dx) return {};
  if (opts.dx.shape.length < 2) {
    throw new TypeError(`${what}: dx ${fmtShape(opts.dx.shape)} needs at least 2 dimensions ([..., H, W])`);
  }
  const [h, w] = opts.dx.shape.slice(-2);
  assertShape(`${what}: dy "${dy.label}" for dx ${fmtShape(opts.dx.shape)} ×${s}`, dy.shape, [
    ...opts.dx.shape.slice(0, -2),
    h * s,
    w * s,
  ]);
  const dx = gradTensor(what, "dx", opts.dx, opts.dx.shape, [dy])!;
  const n = numel(dx.shape);
  const grid = grid1dFor(rec, Math.ceil(n / 4), WG);
  rec.dispatch(bwdKernel, {
    read: { dy },
    write: { dx },
    params: { n, row: grid[0], h, w, s },
    grid,
    overrides: { WG, ALIGNED: w % 4 === 0 ? 1 : 0, ACCUM: accumOverride(opts) },
  });
  return { dx };
}
