/**
 * In-place accumulation `y += alpha · x` (see kernels/axpy.wgsl).
 * @module
 */
import src from "../../kernels/axpy.wgsl" with { type: "text" };
import { defineKernels } from "../gpu/kernel.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { assertShape, numel, type Tensor } from "../gpu/tensor.ts";
import { grid1dFor, requireDtype } from "./_alloc.ts";

const K = defineKernels("axpy.wgsl", src, ["main", "main4"]);
const WG = 256;

/** `y += alpha · x` in place; x and y have the same shape and distinct buffers. Returns y. */
export function axpy(rec: Recorder, y: Tensor, x: Tensor, alpha = 1): Tensor {
  requireDtype("axpy", x);
  requireDtype("axpy", y);
  assertShape(`axpy: x "${x.label}" against y "${y.label}"`, x.shape, y.shape);
  if (x.buffer === y.buffer) throw new TypeError(`axpy: x and y share buffer "${y.label}"`);
  const n = numel(y.shape);
  const vec = n % 4 === 0 && x.offset % 16 === 0 && y.offset % 16 === 0;
  const m = vec ? n / 4 : n;
  const grid = grid1dFor(rec, m, WG);
  const params = { n: m, row: grid[0], alpha };
  if (vec) rec.dispatch(K.main4, { read: { x4: x }, write: { y4: y }, params, grid, overrides: { WG } });
  else rec.dispatch(K.main, { read: { x }, write: { y }, params, grid, overrides: { WG } });
  return y;
}
