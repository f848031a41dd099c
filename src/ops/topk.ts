/**
 * Row-wise top-k (TopK sparse autoencoders: the k active latents of each token).
 * @module
 */
import src from "../../kernels/topk.wgsl" with { type: "text" };
import { defineKernel } from "../gpu/kernel.ts";
import { grid1d, type Recorder } from "../gpu/recorder.ts";
import { assertShape, fmtShape, numel, type Tensor } from "../gpu/tensor.ts";

const kernel = defineKernel("topk.wgsl", src);
/** Workgroup bytes topk.wgsl uses besides the selection: hist + scan (2 × 256 u32) and four scalars. */
const FIXED_SHARED = 2 * 256 * 4 + 16;

/** Options of {@linkcode topk}. */
export interface TopKOptions {
  /** How many elements per row, 1 ≤ k ≤ row length (and ≤ {@linkcode maxTopK} of the device). */
  k: number;
  /** Write here instead of allocating: values f32 and indices u32, both [...rows, k]. */
  out?: TopKResult;
}

/** The k largest elements of each row, sorted descending. */
export interface TopKResult {
  /** f32 [...rows, k]. */
  values: Tensor;
  /** u32 [...rows, k]: positions along the last dimension of the input. */
  indices: Tensor;
}

/** Largest k {@linkcode topk} supports on a device: the selection (8 bytes per element) lives in workgroup memory. */
export function maxTopK(limits: Pick<GPUSupportedLimits, "maxComputeWorkgroupStorageSize">): number {
  let kmax = 32;
  while (2 * kmax * 8 + FIXED_SHARED <= limits.maxComputeWorkgroupStorageSize) kmax *= 2;
  return kmax;
}

/**
 * Top-k over the last dimension of `x` [...rows, len]: values sorted descending, ties broken by the lower index (so
 * the result is deterministic), indices as **u32**. One workgroup per row: radix select of the k-th largest value,
 * then a rank sort of the k survivors.
 *
 * ```ts ignore
 * const { values, indices } = topk(rec, pre, { k: 32 }); // pre [4096, 5120] SAE pre-activations
 * ```
 */
export function topk(rec: Recorder, x: Tensor, opts: TopKOptions): TopKResult {
  const { k } = opts;
  if (x.dtype !== "f32") throw new TypeError(`topk: "${x.label}" is ${x.dtype}, expected f32`);
  if (x.shape.length < 1) throw new TypeError(`topk: x ${fmtShape(x.shape)} has no last dimension`);
  const len = x.shape[x.shape.length - 1];
  const rows = numel(x.shape.slice(0, -1));
  if (!Number.isInteger(k) || k < 1 || k > len) {
    throw new RangeError(`topk: k = ${k} must be an integer in [1, ${len}] for x ${fmtShape(x.shape)}`);
  }
  const limit = maxTopK(rec.ctx.limits);
  if (k > limit) {
    throw new RangeError(
      `topk: k = ${k} exceeds ${limit}, the most this device's workgroup memory ` +
        `(${rec.ctx.limits.maxComputeWorkgroupStorageSize} bytes) holds`,
    );
  }
  const shape = [...x.shape.slice(0, -1), k];
  if (opts.out) {
    assertShape(`topk out.values (x is ${fmtShape(x.shape)}, k = ${k})`, opts.out.values.shape, shape);
    assertShape(`topk out.indices (x is ${fmtShape(x.shape)}, k = ${k})`, opts.out.indices.shape, shape);
    if (opts.out.values.dtype !== "f32" || opts.out.indices.dtype !== "u32") {
      throw new TypeError(
        `topk: out needs values f32 and indices u32, got ${opts.out.values.dtype} and ${opts.out.indices.dtype}`,
      );
    }
  }
  const values = opts.out?.values ?? rec.alloc(shape, "f32", "topk.values");
  const indices = opts.out?.indices ?? rec.alloc(shape, "u32", "topk.indices");
  if (rows === 0) return { values, indices };
  let kmax = 32;
  while (kmax < k) kmax *= 2;
  // about 16 elements per invocation: short rows get small workgroups (fewer idle lanes at each barrier)
  let wg = 64;
  while (wg < 256 && wg * 16 < len) wg *= 2;
  const grid = grid1d(rows, rec.ctx.limits.maxComputeWorkgroupsPerDimension);
  rec.dispatch(kernel, {
    read: { x },
    write: { values, indices },
    params: { rows, len, k, row: grid[0] },
    grid,
    overrides: { KMAX: kmax, WG: wg },
  });
  return { values, indices };
}
