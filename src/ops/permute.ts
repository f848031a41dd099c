/**
 * Permutation and transposition of tensor dimensions into a new contiguous tensor.
 * @module
 */
import src from "../../kernels/permute.wgsl" with { type: "text" };
import { defineKernels } from "../gpu/kernel.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { fmtShape, numel, type Tensor } from "../gpu/tensor.ts";
import { stridesOf } from "./_shape.ts";
import { grid1dFor, outputTensor, requireDtype, WORD_DTYPES } from "./_alloc.ts";

const kernels = defineKernels("permute.wgsl", src, ["main", "transpose2d"]);
const WG = 256, TILE = 32, ROWS = 8, MAX_RANK = 6;

/** Options of {@linkcode permute} and {@linkcode transpose}. */
export interface PermuteOptions {
  /** Write here instead of allocating (must not share a buffer with `x`). */
  out?: Tensor;
  /** Use the general kernel even where the tiled transpose applies (to compare the two). */
  naive?: boolean;
}

/**
 * Drops size-1 dimensions and merges runs of output dimensions that are consecutive input dimensions.
 * Returns the input shape and permutation of the equivalent, smaller problem.
 */
export function simplifyPermutation(
  shape: readonly number[],
  perm: readonly number[],
): { shape: number[]; perm: number[] } {
  const kept = perm.filter((a) => shape[a] !== 1);
  const groups: number[][] = [];
  for (const a of kept) {
    const g = groups.at(-1);
    if (g && g.at(-1)! + 1 === a) g.push(a);
    else groups.push([a]);
  }
  // input order of the groups; dims dropped between them were size 1, so each group is still contiguous
  const order = groups.map((_, k) => k).sort((u, v) => groups[u][0] - groups[v][0]);
  const inputPos = new Array<number>(groups.length);
  order.forEach((k, j) => (inputPos[k] = j));
  return {
    shape: order.map((k) => numel(groups[k].map((a) => shape[a]))),
    perm: inputPos,
  };
}

/**
 * `x.permute(perm)` materialised contiguously: `out.shape[k] = x.shape[perm[k]]`. Any rank whose simplified
 * form (see {@linkcode simplifyPermutation}) has at most 6 dims; f32, i32 or u32.
 *
 * ```ts ignore
 * const seq = permute(rec, h, [0, 2, 3, 1]); // [B, C, H, W] → [B, H, W, C], i.e. [B, H·W, C] in memory
 * ```
 */
export function permute(rec: Recorder, x: Tensor, perm: readonly number[], opts: PermuteOptions = {}): Tensor {
  requireDtype("permute", x, WORD_DTYPES);
  const rank = x.shape.length;
  const sorted = [...perm].sort((a, b) => a - b);
  if (perm.length !== rank || sorted.some((a, i) => a !== i)) {
    throw new RangeError(
      `permute: [${perm.join(",")}] is not a permutation of the ${rank} dims of ${fmtShape(x.shape)}`,
    );
  }
  const shape = perm.map((a) => x.shape[a]);
  const out = outputTensor(rec, "permute", shape, x.dtype, opts.out, [x]);
  const n = numel(shape);
  if (n === 0) return out;
  const s = simplifyPermutation(x.shape, perm);
  const r = s.perm.length;
  if (r > MAX_RANK) {
    throw new RangeError(
      `permute: ${fmtShape(x.shape)} by [${perm.join(",")}] still has ${r} dims after merging (at most ${MAX_RANK})`,
    );
  }
  if (s.perm.every((a, k) => a === k)) {
    rec.copy(x, out, n * 4);
    return out;
  }
  const maxDim = rec.ctx.limits.maxComputeWorkgroupsPerDimension;
  const swapsLastTwo = s.perm.every((a, k) => (k < r - 2 ? a === k : a === (k === r - 2 ? r - 1 : r - 2)));
  const [rows, cols] = s.shape.slice(-2);
  const batch = n / (rows * cols);
  const tiled = [Math.ceil(cols / TILE), Math.ceil(rows / TILE), batch] as const;
  const unused = { rank: 0, shape: [], stride: [] };
  if (!opts.naive && swapsLastTwo && tiled.every((g) => g <= maxDim)) {
    rec.dispatch(kernels.transpose2d, {
      read: { x },
      write: { out },
      params: { n, row: 0, rows, cols, ...unused },
      grid: tiled,
      overrides: { TILE, ROWS },
    });
    return out;
  }
  const inStrides = stridesOf(s.shape);
  const shapeOut = s.perm.map((a) => s.shape[a]);
  const strideOut = s.perm.map((a) => inStrides[a]);
  // the innermost output dim is contiguous in the input: move VEC words per invocation
  const vec = s.perm[r - 1] === r - 1 ? [8, 4, 2].find((v) => shapeOut[r - 1] % v === 0) ?? 1 : 1;
  shapeOut[r - 1] /= vec;
  strideOut[r - 1] *= vec;
  const grid = grid1dFor(rec, n / vec, WG);
  rec.dispatch(kernels.main, {
    read: { x },
    write: { out },
    params: { n, row: grid[0], rank: r, rows: 0, cols: 0, shape: shapeOut, stride: strideOut },
    grid,
    overrides: { WG, VEC: vec },
  });
  return out;
}

/** Swaps two dimensions (negative indices count from the end): `x.transpose(dim0, dim1).contiguous()`. */
export function transpose(rec: Recorder, x: Tensor, dim0: number, dim1: number, opts: PermuteOptions = {}): Tensor {
  const rank = x.shape.length;
  const [a, b] = [dim0 < 0 ? dim0 + rank : dim0, dim1 < 0 ? dim1 + rank : dim1];
  for (const [d, given] of [[a, dim0], [b, dim1]]) {
    if (!Number.isInteger(d) || d < 0 || d >= rank) {
      throw new RangeError(`transpose: dim ${given} is out of range for ${fmtShape(x.shape)}`);
    }
  }
  const perm = x.shape.map((_, i) => (i === a ? b : i === b ? a : i));
  return permute(rec, x, perm, opts);
}
