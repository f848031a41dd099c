/**
 * Nearest-neighbour upsampling of NCHW tensors by an integer factor (diffusers' `Upsample2D` interpolation).
 * @module
 */
import src from "../../kernels/upsample.wgsl" with { type: "text" };
import { defineKernel } from "../gpu/kernel.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { fmtShape, numel, type Tensor } from "../gpu/tensor.ts";
import { grid1dFor, outputTensor, requireDtype, WORD_DTYPES } from "./_alloc.ts";

const kernel = defineKernel("upsample.wgsl", src);
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
