/**
 * Elementwise unary ops: scale (alpha·x + beta), SiLU, exact GELU, QuickGELU, clamp and erf, and their gradients.
 * @module
 */
import src from "../../kernels/unary.wgsl" with { type: "text" };
import bwdSrc from "../../kernels/unary_bwd.wgsl" with { type: "text" };
import geluSrc from "../../kernels/_gelu.wgsl" with { type: "text" };
import { defineKernel, defineKernels, includeWgsl } from "../gpu/kernel.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { assertShape, numel, type Tensor } from "../gpu/tensor.ts";
import { grid1dFor, outputTensor, requireDtype } from "./_alloc.ts";
import { accumOverride, type AccumulateOptions, gradTensor } from "./_grad.ts";

const snippets = { "_gelu.wgsl": geluSrc };
const kernels = defineKernels("unary.wgsl", includeWgsl("unary.wgsl", src, snippets), ["main", "inplace"]);
const bwdKernel = defineKernel("unary_bwd.wgsl", includeWgsl("unary_bwd.wgsl", bwdSrc, snippets));
const WG = 256;
const OPS = { scale: 0, silu: 1, gelu: 2, quickGelu: 3, clamp: 4, erf: 5 } as const;

/** Which unary op. */
export type UnaryOp = keyof typeof OPS;

/** Options of {@linkcode unary}. */
export interface UnaryOptions {
  /** Write here instead of allocating; may be `x` itself (in place), but no other view of `x`'s buffer. */
  out?: Tensor;
  /** `scale`: multiplier (default 1). */
  alpha?: number;
  /** `scale`: offset added after multiplying (default 0). */
  beta?: number;
  /** `clamp`: lower bound (default −∞). */
  lo?: number;
  /** `clamp`: upper bound (default +∞). */
  hi?: number;
}

// In-place dispatches bind this to the unused `x` slot (see unary.wgsl).

/**
 * `out = op(x)` elementwise, f32, any shape.
 *
 * ```ts ignore
 * const y = unary(rec, "gelu", x);
 * unary(rec, "clamp", y, { lo: -1, hi: 1, out: y }); // in place
 * ```
 */
export function unary(rec: Recorder, op: UnaryOp, x: Tensor, opts: UnaryOptions = {}): Tensor {
  if (!(op in OPS)) throw new TypeError(`unary: unknown op "${op}" (ops: ${Object.keys(OPS).join(", ")})`);
  requireDtype(op, x, ["f32"]);
  let [a, b] = [0, 0];
  if (op === "scale") [a, b] = [opts.alpha ?? 1, opts.beta ?? 0];
  if (op === "clamp") {
    [a, b] = [opts.lo ?? -Infinity, opts.hi ?? Infinity];
    if (!(a <= b)) throw new RangeError(`clamp: lower bound ${a} is above upper bound ${b}`);
  }
  const inPlace = opts.out !== undefined && opts.out.buffer === x.buffer && opts.out.offset === x.offset;
  const out = outputTensor(rec, op, x.shape, "f32", opts.out, inPlace ? [] : [x]);
  const n = numel(x.shape);
  const grid = grid1dFor(rec, Math.ceil(n / 4), WG);
  const params = { n, row: grid[0], a, b };
  const overrides = { OP: OPS[op], WG };
  if (inPlace) {
    // the parser sees `x` used (a parameter of the helpers shares its name): bind the context's placeholder
    rec.dispatch(kernels.inplace, { read: { x: rec.ctx.placeholder }, write: { out }, params, grid, overrides });
  } else {
    rec.dispatch(kernels.main, { read: { x }, write: { out }, params, grid, overrides });
  }
  return out;
}

/** Options of {@linkcode scale}. */
export type ScaleOptions = Pick<UnaryOptions, "out" | "alpha" | "beta">;

/** `alpha·x + beta` (e.g. the VAE's latent scaling, `latents / 0.18215`). */
export const scale = (rec: Recorder, x: Tensor, opts: ScaleOptions = {}): Tensor => unary(rec, "scale", x, opts);
/** SiLU (swish): `x·σ(x)`. */
export const silu = (rec: Recorder, x: Tensor, opts: Pick<UnaryOptions, "out"> = {}): Tensor =>
  unary(rec, "silu", x, opts);
/** GELU, exact erf form: `½x(1 + erf(x/√2))`. */
export const gelu = (rec: Recorder, x: Tensor, opts: Pick<UnaryOptions, "out"> = {}): Tensor =>
  unary(rec, "gelu", x, opts);
/** QuickGELU (CLIP): `x·σ(1.702x)`. */
export const quickGelu = (rec: Recorder, x: Tensor, opts: Pick<UnaryOptions, "out"> = {}): Tensor =>
  unary(rec, "quickGelu", x, opts);
/** `min(max(x, lo), hi)`. */
export const clamp = (rec: Recorder, x: Tensor, opts: Pick<UnaryOptions, "out" | "lo" | "hi"> = {}): Tensor =>
  unary(rec, "clamp", x, opts);

/** Inputs of {@linkcode unaryBackward}. */
export interface UnaryBackwardInputs {
  /** dL/dout. */
  dy: Tensor;
  /** The forward's input, same shape as `dy` (not needed for `scale`). */
  x?: Tensor;
}

/** Options of {@linkcode unaryBackward}: the gradient to write and the forward's constants. */
export interface UnaryBackwardOptions extends AccumulateOptions, Pick<UnaryOptions, "alpha" | "lo" | "hi"> {
  /** dL/dx, same shape as `dy`; nothing is computed when absent. Must not share a buffer with `dy` or `x`. */
  dx?: Tensor;
}

/**
 * `dx += dy · op'(x)` elementwise (`scale`: `alpha·dy`; `clamp`: `dy` where `lo ≤ x ≤ hi`, else 0). Returns what
 * it wrote; `accumulate: false` overwrites `dx` instead.
 *
 * ```ts ignore
 * unaryBackward(rec, "silu", { dy, x }, { dx }); // dx += dy·σ(x)(1 + x(1 − σ(x)))
 * ```
 */
export function unaryBackward(
  rec: Recorder,
  op: UnaryOp,
  inputs: UnaryBackwardInputs,
  opts: UnaryBackwardOptions = {},
): { dx?: Tensor } {
  if (!(op in OPS)) throw new TypeError(`unaryBackward: unknown op "${op}" (ops: ${Object.keys(OPS).join(", ")})`);
  const what = `${op} backward`;
  const { dy } = inputs;
  requireDtype(what, dy);
  const x = inputs.x ?? (op === "scale" ? dy : undefined);
  if (!x) throw new TypeError(`${what}: needs the forward input x`);
  requireDtype(what, x);
  assertShape(`${what}: x "${x.label}" against dy "${dy.label}"`, x.shape, dy.shape);
  let [a, b] = [0, 0];
  if (op === "scale") a = opts.alpha ?? 1;
  if (op === "clamp") {
    [a, b] = [opts.lo ?? -Infinity, opts.hi ?? Infinity];
    if (!(a <= b)) throw new RangeError(`clamp backward: lower bound ${a} is above upper bound ${b}`);
  }
  const dx = gradTensor(what, "dx", opts.dx, dy.shape, [dy, x]);
  if (!dx) return {};
  const n = numel(dy.shape);
  const grid = grid1dFor(rec, Math.ceil(n / 4), WG);
  rec.dispatch(bwdKernel, {
    read: { x, dy },
    write: { dx },
    params: { n, row: grid[0], a, b },
    grid,
    overrides: { OP: OPS[op], ACCUM: accumOverride(opts), WG },
  });
  return { dx };
}
