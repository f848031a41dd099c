/**
 * Permutation and transposition of tensor dimensions into a new contiguous tensor, and the gradient (the inverse
 * permutation, accumulated).
 * @module
 */
import src from "../../kernels/permute.wgsl" with { type: "text" };
import { defineKernels } from "../gpu/kernel.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { fmtShape, numel, type Tensor } from "../gpu/tensor.ts";
import { stridesOf } from "./_shape.ts";
import { grid1dFor, outputTensor, requireDtype, WORD_DTYPES } from "./_alloc.ts";
import { type AccumulateOptions, gradTensor } from "./_grad.ts";

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
  record(rec, "permute", x, perm, out, opts.naive ?? false, false);
  return out;
}

/** Records `out (+)= x.permute(perm)`; `accumulate` adds f32 values instead of copying words. */
function record(
  rec: Recorder,
  what: string,
  x: Tensor,
  perm: readonly number[],
  out: Tensor,
  naive: boolean,
  accumulate: boolean,
): void {
  const n = numel(out.shape);
  if (n === 0) return;
  const s = simplifyPermutation(x.shape, perm);
  const r = s.perm.length;
  if (r > MAX_RANK) {
    throw new RangeError(
      `${what}: ${fmtShape(x.shape)} by [${perm.join(",")}] still has ${r} dims after merging (at most ${MAX_RANK})`,
    );
  }
  // the forward passes no ACCUM, so its pipelines (and their cache keys) stay as they were
  const accum: Record<string, number> = accumulate ? { ACCUM: 1 } : {};
  if (s.perm.every((a, k) => a === k)) {
    if (!accumulate) {
      rec.copy(x, out, n * 4);
      return;
    }
    s.shape = [n]; // out += x: the general kernel over one dim
    s.perm = [0];
  }
  const maxDim = rec.ctx.limits.maxComputeWorkgroupsPerDimension;
  const rank = s.perm.length;
  const swapsLastTwo = rank >= 2 &&
    s.perm.every((a, k) => (k < rank - 2 ? a === k : a === (k === rank - 2 ? rank - 1 : rank - 2)));
  const [rows, cols] = s.shape.slice(-2);
  const batch = n / (rows * cols);
  const tiled = [Math.ceil(cols / TILE), Math.ceil(rows / TILE), batch] as const;
  const unused = { rank: 0, shape: [], stride: [] };
  if (!naive && swapsLastTwo && tiled.every((g) => g <= maxDim)) {
    rec.dispatch(kernels.transpose2d, {
      read: { x },
      write: { out },
      params: { n, row: 0, rows, cols, ...unused },
      grid: tiled,
      overrides: { TILE, ROWS, ...accum },
    });
    return;
  }
  const inStrides = stridesOf(s.shape);
  const shapeOut = s.perm.map((a) => s.shape[a]);
  const strideOut = s.perm.map((a) => inStrides[a]);
  // the innermost output dim is contiguous in the input: move VEC words per invocation
  const vec = s.perm[rank - 1] === rank - 1 ? [8, 4, 2].find((v) => shapeOut[rank - 1] % v === 0) ?? 1 : 1;
  shapeOut[rank - 1] /= vec;
  strideOut[rank - 1] *= vec;
  const grid = grid1dFor(rec, n / vec, WG);
  rec.dispatch(kernels.main, {
    read: { x },
    write: { out },
    params: { n, row: grid[0], rank, rows: 0, cols: 0, shape: shapeOut, stride: strideOut },
    grid,
    overrides: { WG, VEC: vec, ...accum },
  });
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

/** Options of {@linkcode permuteBackward}. */
export interface PermuteBackwardOptions extends AccumulateOptions {
  /** dL/dx, shaped like the forward's input (`dx.shape[perm[k]] = dy.shape[k]`); nothing is computed when absent. */
  dx?: Tensor;
}

/** The inverse of a permutation: `inversePermutation(perm)[perm[k]] = k`. */
export function inversePermutation(perm: readonly number[]): number[] {
  const inv = new Array<number>(perm.length);
  perm.forEach((a, k) => (inv[a] = k));
  return inv;
}

/**
 * Gradient of {@linkcode permute}: `dx += dy.permute(inversePermutation(perm))`, by the same kernels (the tiled
 * transpose where it applies). `perm` is the forward's. Returns what it wrote; `accumulate: false` overwrites.
 *
 * ```ts ignore
 * permuteBackward(rec, dSeq, [0, 2, 3, 1], { dx: dh }); // [B, H, W, C] → [B, C, H, W]
 * ```
 */
export function permuteBackward(
  rec: Recorder,
  dy: Tensor,
  perm: readonly number[],
  opts: PermuteBackwardOptions = {},
): { dx?: Tensor } {
  const what = "permute backward";
  requireDtype(what, dy, ["f32"]);
  const rank = dy.shape.length;
  const sorted = [...perm].sort((a, b) => a - b);
  if (perm.length !== rank || sorted.some((a, i) => a !== i)) {
    throw new RangeError(
      `${what}: [${perm.join(",")}] is not a permutation of the ${rank} dims of dy ${fmtShape(dy.shape)}`,
    );
  }
  const inv = inversePermutation(perm);
  const dx = gradTensor(what, "dx", opts.dx, inv.map((a) => dy.shape[a]), [dy]);
  if (!dx) return {};
  record(rec, what, dy, inv, dx, false, opts.accumulate !== false);
  return { dx };
}
