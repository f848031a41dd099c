/**
 * GEGLU's gate: `h · gelu(g)` where `h, g` are the two halves of the last dimension (diffusers `GEGLU`).
 * @module
 */
import src from "../../kernels/geglu.wgsl" with { type: "text" };
import geluLib from "../../kernels/_gelu.wgsl" with { type: "text" };
import { defineKernel } from "../gpu/kernel.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { fmtShape, numel, type Tensor } from "../gpu/tensor.ts";
import { grid1dFor, outputTensor, requireDtype } from "./_alloc.ts";

const kernel = defineKernel("geglu.wgsl", `${src}\n${geluLib}`);
const WG = 256;

/** Options of {@linkcode geglu}. */
export interface GegluOptions {
  /** Write here instead of allocating (shape `[..., F]`; must not share a buffer with `x`). */
  out?: Tensor;
}

/**
 * `x: [..., 2F] → [..., F]`, `out = h · gelu(g)` with `h = x[..., :F]`, `g = x[..., F:]` (exact erf GELU), as in
 * diffusers' `GEGLU.forward` after its projection.
 *
 * ```ts ignore
 * const hidden = geglu(rec, proj); // [2, 4096, 2560] → [2, 4096, 1280]
 * ```
 */
export function geglu(rec: Recorder, x: Tensor, opts: GegluOptions = {}): Tensor {
  requireDtype("geglu", x, ["f32"]);
  const last = x.shape.at(-1);
  if (last === undefined || last % 2 !== 0) {
    throw new TypeError(`geglu: input ${fmtShape(x.shape)} needs an even last dimension (the two halves h and g)`);
  }
  const f = last / 2;
  const shape = [...x.shape.slice(0, -1), f];
  const out = outputTensor(rec, "geglu", shape, "f32", opts.out, [x]);
  const n = numel(shape);
  const grid = grid1dFor(rec, Math.ceil(n / 4), WG);
  const overrides = { WG, ALIGNED: f % 4 === 0 ? 1 : 0 };
  rec.dispatch(kernel, { read: { x }, write: { out }, params: { n, row: grid[0], f }, grid, overrides });
  return out;
}
