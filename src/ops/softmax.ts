/**
 * Numerically stable softmax over the last dimension (attention probabilities, classifier outputs).
 * @module
 */
import src from "../../kernels/softmax.wgsl" with { type: "text" };
import bwdSrc from "../../kernels/softmax_bwd.wgsl" with { type: "text" };
import commonSrc from "../../kernels/_softmax_common.wgsl" with { type: "text" };
import { defineKernel, includeWgsl } from "../gpu/kernel.ts";
import { grid1d, type Recorder } from "../gpu/recorder.ts";
import { assertShape, fmtShape, numel, type Tensor } from "../gpu/tensor.ts";
import { requireDtype } from "./_alloc.ts";
import { accumOverride, type AccumulateOptions, gradTensor } from "./_grad.ts";

const snippets = { "_softmax_common.wgsl": commonSrc };
const kernel = defineKernel("softmax.wgsl", includeWgsl("softmax.wgsl", src, snippets));
const bwdKernel = defineKernel("softmax_bwd.wgsl", includeWgsl("softmax_bwd.wgsl", bwdSrc, snippets));
const WG = 256;

/** Options of {@linkcode softmax}. */
export interface SoftmaxOptions {
  /** Write here instead of allocating; must not share a buffer with `x`. */
  out?: Tensor;
  /** Multiplies the logits before the softmax (e.g. 1/√d in attention). Default 1. */
  scale?: number;
}

/** Invocations per row: about four elements each, a power of two in [32, WG]. */
function threadsPerRow(len: number): number {
  const want = Math.ceil(len / 4);
  let t = 32;
  while (t < want && t < WG) t *= 2;
  return t;
}

/**
 * `softmax(scale · x)` over the last dimension of `x` [...rows, L], subtracting each row's maximum first.
 *
 * ```ts ignore
 * const probs = softmax(rec, scores, { scale: 1 / Math.sqrt(64) }); // scores [16, 4096, 77]
 * ```
 */
export function softmax(rec: Recorder, x: Tensor, opts: SoftmaxOptions = {}): Tensor {
  const { scale = 1 } = opts;
  if (x.dtype !== "f32") throw new TypeError(`softmax: "${x.label}" is ${x.dtype}, expected f32`);
  if (x.shape.length < 1) throw new TypeError(`softmax: x ${fmtShape(x.shape)} has no last dimension`);
  if (!Number.isFinite(scale)) throw new RangeError(`softmax: scale must be finite, got ${scale}`);
  if (opts.out) {
    assertShape("softmax out", opts.out.shape, x.shape);
    if (opts.out.buffer === x.buffer) throw new TypeError(`softmax: out must not share a buffer with x (in-place)`);
  }
  const out = opts.out ?? rec.alloc(x.shape, "f32", "softmax");
  const len = x.shape[x.shape.length - 1];
  const rows = numel(x.shape.slice(0, -1));
  if (len === 0 || rows === 0) return out;
  const tpr = threadsPerRow(len);
  const grid = grid1d(Math.ceil(rows / (WG / tpr)), rec.ctx.limits.maxComputeWorkgroupsPerDimension);
  rec.dispatch(kernel, {
    read: { x },
    write: { out },
    params: { rows, len, row: grid[0], scale },
    grid,
    overrides: { WG, TPR: tpr },
  });
  return out;
}

/** Inputs of {@linkcode softmaxBackward}. */
export interface SoftmaxBackwardInputs {
  /** The forward's output, [...rows, L]. */
  y: Tensor;
  /** dL/dy, shaped like `y`. */
  dout: Tensor;
}

/** Options of {@linkcode softmaxBackward}. */
export interface SoftmaxBackwardOptions extends AccumulateOptions {
  /** The forward's logit scale. Default 1. */
  scale?: number;
  /** dL/dx, shaped like `y`; not computed when absent. */
  dx?: Tensor;
}

/**
 * Gradient of {@linkcode softmax} from its output `y` and `dout = dL/dy`:
 * `dx = scale · y ⊙ (dout − Σ_j dout_j·y_j)` per row. Accumulates into `dx` unless `accumulate` is false.
 *
 * ```ts ignore
 * const probs = softmax(rec, scores, { scale: 0.125 });
 * // … later, with dProbs = dL/dprobs:
 * softmaxBackward(rec, { y: probs, dout: dProbs }, { scale: 0.125, dx: dScores });
 * ```
 */
export function softmaxBackward(
  rec: Recorder,
  inputs: SoftmaxBackwardInputs,
  opts: SoftmaxBackwardOptions = {},
): { dx?: Tensor } {
  const what = "softmax backward";
  const { y, dout } = inputs;
  const { scale = 1 } = opts;
  for (const t of [y, dout]) requireDtype(what, t);
  if (y.shape.length < 1) throw new TypeError(`${what}: y ${fmtShape(y.shape)} has no last dimension`);
  if (!Number.isFinite(scale)) throw new RangeError(`${what}: scale must be finite, got ${scale}`);
  assertShape(`${what}: dout "${dout.label}" (y is ${fmtShape(y.shape)})`, dout.shape, y.shape);
  const dx = gradTensor(what, "dx", opts.dx, y.shape, [y, dout]);
  if (!dx) return {};
  const len = y.shape[y.shape.length - 1];
  const rows = numel(y.shape.slice(0, -1));
  if (len === 0 || rows === 0) return { dx };
  const tpr = threadsPerRow(len);
  const grid = grid1d(Math.ceil(rows / (WG / tpr)), rec.ctx.limits.maxComputeWorkgroupsPerDimension);
  rec.dispatch(bwdKernel, {
    read: { y, dout },
    write: { dx },
    params: { rows, len, row: grid[0], scale },
    grid,
    overrides: { WG, TPR: tpr, ACCUM: accumOverride(opts) },
  });
  return { dx };
}
