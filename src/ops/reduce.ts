/**
 * Sum and mean over one axis or over everything, accurate for long reductions (multi-pass tree).
 * @module
 */
import src from "../../kernels/reduce.wgsl" with { type: "text" };
import columnSumSrc from "../../kernels/_column_sum.wgsl" with { type: "text" };
import { defineKernel, includeWgsl } from "../gpu/kernel.ts";
import { grid1d, type Recorder } from "../gpu/recorder.ts";
import { assertShape, fmtShape, numel, type Tensor } from "../gpu/tensor.ts";

const kernel = defineKernel("reduce.wgsl", includeWgsl("reduce.wgsl", src, { "_column_sum.wgsl": columnSumSrc }));
const WG = 256;
/** Elements each invocation adds serially per pass (the rest is a tree). */
const PER = 16;

/** Options of {@linkcode sum} and {@linkcode mean}. */
export interface ReduceOptions {
  /** Axis to reduce (negative counts from the end), or null / absent to reduce every element to a scalar. */
  axis?: number | null;
  /** Keep the reduced axis (axes) with length 1. Default false. */
  keepDims?: boolean;
  /** Write here instead of allocating; must not share a buffer with `x`. */
  out?: Tensor;
}

/** `x` seen as [outer, n, inner] around `axis`, and the output shape. */
function reduceView(what: string, shape: readonly number[], opts: ReduceOptions) {
  const { axis = null, keepDims = false } = opts;
  if (axis === null) {
    return { outer: 1, n: numel(shape), inner: 1, outShape: keepDims ? shape.map(() => 1) : [] };
  }
  const r = shape.length;
  if (!Number.isInteger(axis) || axis < -r || axis >= r) {
    throw new RangeError(`${what}: axis ${axis} is out of range for x ${fmtShape(shape)} (rank ${r})`);
  }
  const a = axis < 0 ? axis + r : axis;
  const outShape = keepDims ? shape.map((d, i) => (i === a ? 1 : d)) : shape.filter((_, i) => i !== a);
  return { outer: numel(shape.slice(0, a)), n: shape[a], inner: numel(shape.slice(a + 1)), outShape };
}

function reduce(rec: Recorder, what: "sum" | "mean", x: Tensor, opts: ReduceOptions): Tensor {
  if (x.dtype !== "f32") throw new TypeError(`${what}: "${x.label}" is ${x.dtype}, expected f32`);
  const { outer, n, inner, outShape } = reduceView(what, x.shape, opts);
  if (opts.out) {
    assertShape(`${what} out (x is ${fmtShape(x.shape)}, axis ${opts.axis ?? null})`, opts.out.shape, outShape);
    if (opts.out.buffer === x.buffer) throw new TypeError(`${what}: out must not share a buffer with x`);
  }
  if (n === 0 && what === "mean" && outer * inner > 0) {
    throw new RangeError(`mean: the reduced axis of x ${fmtShape(x.shape)} is empty`);
  }
  const out = opts.out ?? rec.alloc(outShape, "f32", what);
  if (outer * inner === 0) return out;
  if (n === 0) {
    rec.zero(out);
    return out;
  }
  // Columns (o, j) side by side for coalescing when inner > 1; TY no longer than the reduced axis needs.
  let minTx = 1;
  while (minTx < inner && minTx < 32) minTx *= 2;
  const cols = outer * inner;
  const maxDim = rec.ctx.limits.maxComputeWorkgroupsPerDimension;
  let src = x, len = n;
  for (;;) {
    let ty = 1;
    while (ty < WG / minTx && ty * PER < len) ty *= 2;
    const tx = WG / ty;
    const chunks = Math.ceil(len / (ty * PER));
    const tiles = Math.ceil(cols / tx);
    const last = chunks === 1;
    const dst = last ? out : rec.alloc([outer, chunks, inner], "f32", `${what}.partial`);
    const total = chunks * tiles;
    const grid = grid1d(total, maxDim);
    const scale = last && what === "mean" ? 1 / n : 1;
    rec.dispatch(kernel, {
      read: { x: src },
      write: { out: dst },
      params: { n: len, inner, chunks, cols, tiles, per: PER, total, row: grid[0], scale },
      grid,
      overrides: { TX: tx, TY: ty },
    });
    if (src !== x) rec.releaseAfterSubmit(src);
    if (last) return out;
    src = dst;
    len = chunks;
  }
}

/**
 * Sum of `x` over `axis` (or of every element when `axis` is null or absent), like `torch.sum`.
 *
 * ```ts ignore
 * const perChannel = sum(rec, x, { axis: 1, keepDims: true }); // [B, C, H, W] -> [B, 1, H, W]
 * const total = sum(rec, x); // shape []
 * ```
 */
export function sum(rec: Recorder, x: Tensor, opts: ReduceOptions = {}): Tensor {
  return reduce(rec, "sum", x, opts);
}

/** Mean of `x` over `axis` (or of every element when `axis` is null or absent), like `torch.mean`. */
export function mean(rec: Recorder, x: Tensor, opts: ReduceOptions = {}): Tensor {
  return reduce(rec, "mean", x, opts);
}
