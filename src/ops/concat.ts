/**
 * Concatenation of contiguous tensors along any axis (the U-Net's skip connections: `cat([h, skip], dim=1)`).
 * @module
 */
import src from "../../kernels/concat.wgsl" with { type: "text" };
import { defineKernel } from "../gpu/kernel.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { fmtShape, numel, type Tensor } from "../gpu/tensor.ts";
import { grid1dFor, outputTensor, requireDtype, WORD_DTYPES } from "./_alloc.ts";

const kernel = defineKernel("concat.wgsl", src);
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
