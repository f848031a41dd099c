/**
 * Concatenation of contiguous tensors along any axis (the U-Net's skip connections: `cat([h, skip], dim=1)`), and
 * its gradient.
 * @module
 */
import src from "../../kernels/concat.wgsl" with { type: "text" };
import bwdSrc from "../../kernels/concat_bwd.wgsl" with { type: "text" };
import { defineKernel } from "../gpu/kernel.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { fmtShape, numel, type Tensor } from "../gpu/tensor.ts";
import { grid1dFor, outputTensor, requireDtype, WORD_DTYPES } from "./_alloc.ts";
import { accumOverride, type AccumulateOptions, gradTensor } from "./_grad.ts";

const kernel = defineKernel("concat.wgsl", src);
const bwdKernel = defineKernel("concat_bwd.wgsl", bwdSrc);
const WG = 256;
const MAX_COPIES = 64; // runs up to which buffer copies replace the kernel

/** Options of {@linkcode concat}. */
export interface ConcatOptions {
  /** Axis to concatenate along; negative counts from the end (default 1, the channels of NCHW). */
  axis?: number;
  /** Write here instead of allocating (must not share a buffer with any input). */
  out?: Tensor;
}

/**
 * Concatenates `xs` along `axis`: every other dimension must agree, as must the dtypes (f32, i32 or u32).
 *
 * ```ts ignore
 * const h2 = concat(rec, [h, skip]); // [2, 640, 32, 32] ⊕ [2, 320, 32, 32] → [2, 960, 32, 32]
 * ```
 */
export function concat(rec: Recorder, xs: readonly Tensor[], opts: ConcatOptions = {}): Tensor {
  if (xs.length === 0) throw new TypeError("concat: needs at least one tensor");
  const first = xs[0];
  const rank = first.shape.length;
  const axis0 = opts.axis ?? 1;
  const axis = axis0 < 0 ? axis0 + rank : axis0;
  const shapes = xs.map((t) => fmtShape(t.shape)).join(", ");
  if (!Number.isInteger(axis0) || axis < 0 || axis >= rank) {
    throw new RangeError(`concat: axis ${axis0} is out of range for rank ${rank} (shapes ${shapes})`);
  }
  for (const t of xs) {
    requireDtype("concat", t, WORD_DTYPES);
    if (t.dtype !== first.dtype) throw new TypeError(`concat: dtypes differ (${xs.map((t) => t.dtype).join(", ")})`);
    if (t.shape.length !== rank || t.shape.some((d, i) => i !== axis && d !== first.shape[i])) {
      throw new TypeError(`concat: shapes ${shapes} differ outside axis ${axis}`);
    }
  }
  const total = xs.reduce((s, t) => s + t.shape[axis], 0);
  const shape = first.shape.map((d, i) => (i === axis ? total : d));
  const out = outputTensor(rec, "concat", shape, first.dtype, opts.out, xs);
  const inner = numel(shape.slice(axis + 1));
  const outer = numel(shape.slice(0, axis));
  const span = total * inner;
  const copies = outer * xs.length <= MAX_COPIES;
  let start = 0;
  for (const x of xs) {
    const chunk = x.shape[axis] * inner;
    const n = outer * chunk;
    if (n > 0 && copies) {
      for (let o = 0; o < outer; o++) {
        const src = { ...x, offset: x.offset + 4 * o * chunk, shape: [chunk] };
        const dst = { ...out, offset: out.offset + 4 * (o * span + start * inner), shape: [chunk] };
        rec.copy(src, dst, 4 * chunk);
      }
    } else if (n > 0) {
      const grid = grid1dFor(rec, n, WG);
      const params = { n, row: grid[0], chunk, span, start: start * inner };
      rec.dispatch(kernel, { read: { x }, write: { out }, params, grid, overrides: { WG } });
    }
    start += x.shape[axis];
  }
  return out;
}

/** Options of {@linkcode concatBackward}. */
export interface ConcatBackwardOptions extends AccumulateOptions {
  /**
   * The gradient of each forward input, in the forward's order; `null` where it is not wanted (then `sizes` must
   * say how long that input was along the axis).
   */
  dxs: readonly (Tensor | null)[];
  /** Each forward input's length along the axis; needed only when some entry of `dxs` is null. */
  sizes?: readonly number[];
  /** The forward's axis (negative counts from the end; default 1). */
  axis?: number;
}

/**
 * Gradient of {@linkcode concat}: splits `dy` along the axis back into the inputs' gradients,
 * `dxs[k] += dy[..., start_k : start_k + size_k, ...]`. Returns the gradients it wrote (null where not given).
 *
 * ```ts ignore
 * concatBackward(rec, dCat, { dxs: [dh, dSkip] }); // [2, 960, 32, 32] → [2, 640, 32, 32], [2, 320, 32, 32]
 * ```
 */
export function concatBackward(rec: Recorder, dy: Tensor, opts: ConcatBackwardOptions): (Tensor | null)[] {
  const what = "concat backward";
  requireDtype(what, dy, ["f32"]);
  const { dxs } = opts;
  if (dxs.length === 0) throw new TypeError(`${what}: needs at least one input gradient (or null)`);
  const rank = dy.shape.length;
  const axis0 = opts.axis ?? 1;
  const axis = axis0 < 0 ? axis0 + rank : axis0;
  if (!Number.isInteger(axis0) || axis < 0 || axis >= rank) {
    throw new RangeError(`${what}: axis ${axis0} is out of range for dy ${fmtShape(dy.shape)}`);
  }
  if (opts.sizes && opts.sizes.length !== dxs.length) {
    throw new TypeError(`${what}: ${opts.sizes.length} sizes for ${dxs.length} inputs`);
  }
  const sizes = dxs.map((dx, k) => {
    const size = dx ? dx.shape[axis] : opts.sizes?.[k];
    if (size === undefined) throw new TypeError(`${what}: input ${k} has no gradient, so sizes[${k}] is needed`);
    if (opts.sizes && opts.sizes[k] !== size) {
      throw new TypeError(`${what}: sizes[${k}] = ${opts.sizes[k]} but dxs[${k}] is ${fmtShape(dx!.shape)}`);
    }
    return size;
  });
  const total = sizes.reduce((s, v) => s + v, 0);
  if (total !== dy.shape[axis]) {
    throw new TypeError(
      `${what}: input lengths [${sizes.join(",")}] along axis ${axis} sum to ${total}, dy ${fmtShape(dy.shape)} has ` +
        `${dy.shape[axis]}`,
    );
  }
  dxs.forEach((dx, k) =>
    gradTensor(what, `dxs[${k}]`, dx ?? undefined, dy.shape.map((d, i) => (i === axis ? sizes[k] : d)), [dy])
  );
  const inner = numel(dy.shape.slice(axis + 1));
  const outer = numel(dy.shape.slice(0, axis));
  const span = total * inner;
  const accum = accumOverride(opts);
  const copies = !accum && outer * dxs.length <= MAX_COPIES;
  let start = 0;
  dxs.forEach((dx, k) => {
    const chunk = sizes[k] * inner;
    const n = outer * chunk;
    if (dx && n > 0 && copies) {
      for (let o = 0; o < outer; o++) {
        const src = { ...dy, offset: dy.offset + 4 * (o * span + start * inner), shape: [chunk] };
        const dst = { ...dx, offset: dx.offset + 4 * o * chunk, shape: [chunk] };
        rec.copy(src, dst, 4 * chunk);
      }
    } else if (dx && n > 0) {
      const vec = chunk % 4 === 0 ? 4 : 1;
      const grid = grid1dFor(rec, n / vec, WG);
      const params = { n, row: grid[0], chunk, span, start: start * inner };
      rec.dispatch(bwdKernel, { read: { dy }, write: { dx }, params, grid, overrides: { WG, VEC: vec, ACCUM: accum } });
    }
    start += sizes[k];
  });
  return [...dxs];
}
