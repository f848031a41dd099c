/**
 * Classifier-free guidance combine and the image-to-pixels conversion (see kernels/cfg.wgsl, to_rgba8.wgsl).
 * @module
 */
import cfgSrc from "../../kernels/cfg.wgsl" with { type: "text" };
import rgbaSrc from "../../kernels/to_rgba8.wgsl" with { type: "text" };
import { defineKernel } from "../gpu/kernel.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { fmtShape, numel, type Tensor } from "../gpu/tensor.ts";
import { grid1dFor, outputTensor, requireDtype } from "./_alloc.ts";

const cfgKernel = defineKernel("cfg.wgsl", cfgSrc);
const rgbaKernel = defineKernel("to_rgba8.wgsl", rgbaSrc);
const WG = 256;

/** `uncond + g · (cond − uncond)` for a `[uncond, cond]` batch [2B, …] → [B, …]. */
export function guidance(rec: Recorder, x: Tensor, scale: number, opts: { out?: Tensor } = {}): Tensor {
  requireDtype("guidance", x);
  if (x.shape[0] % 2) throw new TypeError(`guidance: batch ${fmtShape(x.shape)} is not a [uncond, cond] pair`);
  const shape = [x.shape[0] / 2, ...x.shape.slice(1)];
  const out = outputTensor(rec, "guidance", shape, "f32", opts.out, [x]);
  const half = numel(shape);
  const grid = grid1dFor(rec, half, WG);
  rec.dispatch(cfgKernel, {
    read: { x },
    write: { out },
    params: { half, row: grid[0], g: scale },
    grid,
    overrides: { WG },
  });
  return out;
}

/** A decoded image [B, 3, H, W] in [−1, 1] to RGBA8 pixels [B, H, W] (u32 each, R in the low byte). */
export function toRgba8(rec: Recorder, image: Tensor): Tensor {
  requireDtype("toRgba8", image);
  if (image.shape.length !== 4 || image.shape[1] !== 3) {
    throw new TypeError(`toRgba8: image ${fmtShape(image.shape)} must be [B, 3, H, W]`);
  }
  const [B, , H, W] = image.shape;
  const out = rec.alloc([B, H, W], "u32", "rgba8");
  const n = B * H * W;
  const grid = grid1dFor(rec, n, WG);
  rec.dispatch(rgbaKernel, {
    read: { x: image },
    write: { out },
    params: { hw: H * W, n, row: grid[0] },
    grid,
    overrides: { WG },
  });
  return out;
}
