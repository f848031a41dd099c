/**
 * GEGLU's gate: `h · gelu(g)` where `h, g` are the two halves of the last dimension (diffusers `GEGLU`), and its
 * gradient.
 * @module
 */
import src from "../../kernels/geglu.wgsl" with { type: "text" };
import bwdSrc from "../../kernels/geglu_bwd.wgsl" with { type: "text" };
import commonSrc from "../../kernels/_geglu_common.wgsl" with { type: "text" };
import geluSrc from "../../kernels/_gelu.wgsl" with { type: "text" };
import { defineKernel, includeWgsl } from "../gpu/kernel.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { assertShape, fmtShape, numel, type Tensor } from "../gpu/tensor.ts";
import { grid1dFor, outputTensor, requireDtype } from "./_alloc.ts";
import { accumOverride, type AccumulateOptions, gradTensor } from "./_grad.ts";

const snippets = { "_geglu_common.wgsl": commonSrc, "_gelu.wgsl": geluSrc };
const kernel = defineKernel("geglu.wgsl", includeWgsl("geglu.wgsl", src, snippets));
const bwdKernel = defineKernel("geglu_bwd.wgsl", includeWgsl("geglu_bwd.wgsl", bwdSrc, snippets));
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

/** Inputs of {@linkcode gegluBackward}. */
export interface GegluBackwardInputs {
  /** dL/dout, `[..., F]`. */
  dy: Tensor;
  /** The forward's input `[..., 2F]`. */
  x: Tensor;
}

/** Options of {@linkcode gegluBackward}. */
export interface GegluBackwardOptions extends AccumulateOptions {
  /** dL/dx, `[..., 2F]` like `x`; nothing is computed when absent. */
  dx?: Tensor;
}

/**
 * Gradient of {@linkcode geglu}: `dx[..., :F] += dy · gelu(g)` and `dx[..., F:] += dy · h · gelu'(g)`, with
 * `gelu'(g) = Φ(g) + g·φ(g)`. Returns what it wrote; `accumulate: false` overwrites `dx` instead.
 *
 * ```ts ignore
 * gegluBackward(rec, { dy, x: proj }, { dx: dProj, accumulate: false }); // [2, 4096, 1280] → [2, 4096, 2560]
 * ```
 */
export function gegluBackward(
  rec: Recorder,
  inputs: GegluBackwardInputs,
  opts: GegluBackwardOptions = {},
): { dx?: Tensor } {
  const { dy, x } = inputs;
  requireDtype("geglu backward", dy, ["f32"]);
  requireDtype("geglu backward", x, ["f32"]);
  const last = x.shape.at(-1);
  if (last === undefined || last % 2 !== 0) {
    throw new TypeError(`geglu backward: input ${fmtShape(x.shape)} needs an even last dimension (h and g)`);
  }
  const f = last / 2;
  assertShape(`geglu backward: dy "${dy.label}" for x ${fmtShape(x.shape)}`, dy.shape, [...x.shape.slice(0, -1), f]);
  const dx = gradTensor("geglu backward", "dx", opts.dx, x.shape, [dy, x]);
  if (!dx) return {};
  const n = numel(dy.shape);
  const grid = grid1dFor(rec, Math.ceil(n / 4), WG);
  rec.dispatch(bwdKernel, {
    read: { x, dy },
    write: { dx },
    params: { n, row: grid[0], f },
    grid,
    overrides: { WG, ALIGNED: f % 4 === 0 ? 1 : 0, ACCUM: accumOverride(opts) },
  });
  return { dx };
}
