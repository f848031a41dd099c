/**
 * Gradients of {@linkcode conv2d} (NCHW, stride 1 or 2, any padding): dx as a gathered transposed convolution,
 * dw as a split-K GEMM per tap, dbias as a chunked sum (see kernels/conv2d_bwd.wgsl and docs/conv2d.md).
 * @module
 */
import src from "../../kernels/conv2d_bwd.wgsl" with { type: "text" };
import { defineKernels } from "../gpu/kernel.ts";
import { grid1d, type Recorder } from "../gpu/recorder.ts";
import { assertShape, fmtShape, type Tensor } from "../gpu/tensor.ts";
import { requireDtype } from "./_alloc.ts";
import { defineF16Kernels } from "./_f16.ts";
import { accumOverride, type AccumulateOptions, clearTensor, gradTensor } from "./_grad.ts";
import { type Conv2dPlan, planConv2d } from "./conv2d.ts";

const kernels = defineKernels("conv2d_bwd.wgsl", src, ["pack", "dx_main", "dw_main", "dbias", "reduce"]);
/** The pack with `src` read as f16: wᵀ of a frozen f16 weight, for dx. */
const f16Pack = defineF16Kernels("conv2d_bwd.wgsl", src, "src", ["pack"]).pack;
/** Output rows and columns one invocation of a GEMM kernel computes. */
const TILE = 16;
/** Invocations per GEMM workgroup (lavapipe's SIMD width). */
const WG = 8;
const PACK_WG = 256;
/** Workgroup size of the dbias and reduce passes. */
const BWG = 64;
/**
 * Output pixels one dw invocation sums over (a split of K = B·Ho·Wo): 256 steps of 4 pixels, far below
 * lavapipe's 65,535 loop iterations, and short enough serial sums for f32.
 */
const DW_SPLIT = 1024;
/** Most K splits of dw summed in one reduce pass (a reduce invocation loops once per split). */
const MAX_PARTS = 64;
/** dout elements per dbias workgroup: 256 per lane. */
const BIAS_CHUNK = 256 * BWG;
const DEFAULT_PARTIAL_BYTES = 64 << 20;

/** The tensors {@linkcode conv2dBackward} reads. */
export interface Conv2dBackwardInputs {
  /** The forward's input, [B, Cin, H, W] (read for dw; its shape is needed for dx). */
  x: Tensor;
  /** The forward's weight, [Cout, Cin, kh, kw] (read for dx). */
  w: Tensor;
  /** dL/d(forward output), [B, Cout, Ho, Wo]. */
  dout: Tensor;
}

/** Options of {@linkcode conv2dBackward}: the forward's geometry and the gradients to write. */
export interface Conv2dBackwardOptions extends AccumulateOptions {
  /** The forward's stride (1 or 2). Default 1. */
  stride?: 1 | 2;
  /** The forward's zero padding: one number for all sides, or [top, bottom, left, right]. Default 0. */
  padding?: number | readonly [number, number, number, number];
  /** dL/dx, shaped like x; not computed when absent. */
  dx?: Tensor;
  /** dL/dw, shaped like w; not computed when absent. */
  dw?: Tensor;
  /** dL/dbias, [Cout]; not computed when absent. */
  dbias?: Tensor;
  /**
   * Scratch budget for dw's split-K partial sums (default 64 MiB). K = B·Ho·Wo is split every 1024 pixels;
   * splits that do not fit are summed in further rounds, and a split that has the budget alone accumulates
   * straight into dw.
   */
  partialBytes?: number;
}

/** The gradients {@linkcode conv2dBackward} wrote. */
export interface Conv2dGradients {
  dx?: Tensor;
  dw?: Tensor;
  dbias?: Tensor;
}

/**
 * Gradients of `out = conv2d(x, w) + bias` for those given: `dx (+)= conv2dᵀ(dout, w)`,
 * `dw[co, ci, ky, kx] (+)= Σ_{b,oy,ox} dout[b, co, oy, ox] · x[b, ci, oy·s + ky − pt, ox·s + kx − pl]` and
 * `dbias[co] (+)= Σ dout[:, co]`. Gradients accumulate unless `accumulate` is false. Packing scratch (dout, x and
 * w to channel-last, about the size of each) is recycled within the recording.
 *
 * ```ts ignore
 * // the VAE encoder's downsampler: forward padding [0, 1, 0, 1], stride 2
 * conv2dBackward(rec, { x, w, dout }, { stride: 2, padding: [0, 1, 0, 1], dx, dw, dbias });
 * ```
 */
export function conv2dBackward(
  rec: Recorder,
  inputs: Conv2dBackwardInputs,
  opts: Conv2dBackwardOptions = {},
): Conv2dGradients {
  const what = "conv2d backward";
  const { x, w, dout } = inputs;
  for (const t of [x, dout]) requireDtype(what, t);
  // A frozen f16 weight (weights "f16") still passes gradients on to x: only wᵀ's pack reads it.
  requireDtype(what, w, opts.dw ? ["f32"] : ["f32", "f16"]);
  const plan = planConv2d(x.shape, w.shape, opts.stride ?? 1, opts.padding ?? 0);
  assertShape(
    `${what}: dout "${dout.label}" of x ${fmtShape(x.shape)} and w ${fmtShape(w.shape)}`,
    dout.shape,
    plan.shape,
  );
  const reads = [x, w, dout];
  const dx = gradTensor(what, "dx", opts.dx, x.shape, reads);
  const dw = gradTensor(what, "dw", opts.dw, w.shape, reads);
  const dbias = gradTensor(what, "dbias", opts.dbias, [plan.Cout], reads);
  const budget = Math.min(opts.partialBytes ?? DEFAULT_PARTIAL_BYTES, rec.ctx.limits.maxStorageBufferBindingSize);
  if (!(budget >= 0)) throw new RangeError(`${what}: partialBytes must be ≥ 0, got ${opts.partialBytes}`);
  const accum = accumOverride(opts);
  const K = plan.B * plan.Ho * plan.Wo;
  if (K === 0) { // nothing flows back: overwriting means zeroing
    if (!accum) { for (const g of [dx, dw, dbias]) if (g) clearTensor(rec, g); }
    return written({ dx, dw, dbias });
  }
  const geo = geometry(plan, K);
  const { B, Cin, Cout, H, W, Ho, Wo, kh, kw, stride: s } = plan;
  // NCHW → [B·Ho·Wo, Cout] and [B·H·W, Cin]; w [Cout, Cin, taps] → wᵀ [Cin, taps, Cout]
  const doutP = dx || dw ? pack(rec, geo, dout, [B, Ho * Wo, Cout], [Cout * Ho * Wo, Ho * Wo]) : undefined;
  if (dx) {
    const wT = pack(rec, geo, w, [Cin, kh * kw, Cout], [kh * kw, Cin * kh * kw]);
    const classPixels = Math.ceil(H / s) * Math.ceil(W / s); // the largest of the s² parity classes
    rec.dispatch(kernels.dx_main, {
      read: { wt: wT, dp: doutP! },
      write: { dst: dx },
      params: geo,
      grid: [Math.ceil(classPixels / (TILE * WG)), Math.ceil(Cin / TILE), B * s * s],
      overrides: { WG, ACCUM: accum },
    });
    rec.recycle(wT);
  }
  if (dw) {
    const xP = pack(rec, geo, x, [B, H * W, Cin], [Cin * H * W, H * W]);
    weightGrad(rec, geo, plan, doutP!, xP, dw, accum, budget);
    rec.recycle(xP);
  }
  if (doutP) rec.recycle(doutP);
  if (dbias) biasGrad(rec, geo, plan, dout, dbias, accum);
  return written({ dx, dw, dbias });
}

/** The gradients that were given, without keys for the others. */
function written(grads: Conv2dGradients): Conv2dGradients {
  return Object.fromEntries(Object.entries(grads).filter(([, t]) => t !== undefined));
}

/** Uniform values shared by every dispatch of one backward (per-dispatch fields are overwritten). */
type Geometry = Record<string, number>;

function geometry(plan: Conv2dPlan, K: number): Geometry {
  const { Cin, Cout, H, W, Ho, Wo, kh, kw, stride, pad } = plan;
  return {
    Cin,
    Cout,
    H,
    W,
    Ho,
    Wo,
    kh,
    kw,
    stride,
    pt: pad[0],
    pl: pad[2],
    Cp4: Math.ceil(Cin / 4),
    Cop4: Math.ceil(Cout / 4),
    K,
    k0: 0,
    kc: 0,
    part: 0,
    n: 0,
    row: 0,
    C: 0,
    Cpad: 0,
    T: 0,
    so: 0,
    sc: 0,
    parts: 0,
  };
}

/**
 * `src` as [O, T, 4·⌈C/4⌉] with `packed[o, t, c] = src[o·so + c·sc + t]` (zero past C): channel-last, channels
 * padded to whole vec4s. Scratch from `rec.alloc`, for the caller to recycle.
 */
function pack(
  rec: Recorder,
  geo: Geometry,
  t: Tensor,
  [O, T, C]: [number, number, number],
  [so, sc]: [number, number],
): Tensor {
  const Cpad = 4 * Math.ceil(C / 4);
  const packed = rec.alloc([O, T, Cpad], "f32", `conv2d backward packed ${t.label}`);
  const n = O * T * Cpad;
  const grid = grid1d(Math.ceil(n / PACK_WG), rec.ctx.limits.maxComputeWorkgroupsPerDimension);
  rec.dispatch(t.dtype === "f16" ? f16Pack : kernels.pack, {
    read: { src: t },
    write: { packed },
    params: { ...geo, n, row: grid[0], C, Cpad, T, so, sc },
    grid,
  });
  return packed;
}

/** dw from packed dout and x: K split every DW_SPLIT pixels, the splits summed in rounds that fit `budget`. */
function weightGrad(
  rec: Recorder,
  geo: Geometry,
  plan: Conv2dPlan,
  doutP: Tensor,
  xP: Tensor,
  dw: Tensor,
  accum: number,
  budget: number,
): void {
  const K = geo.K;
  const splits = Math.ceil(K / DW_SPLIT);
  const per = plan.Cout * plan.Cin * plan.kh * plan.kw;
  const perRound = Math.max(1, Math.min(splits, MAX_PARTS, Math.floor(budget / (4 * per))));
  const partial = perRound > 1 ? rec.alloc([perRound, per], "f32", "conv2d backward dw partials") : undefined;
  const jobs = plan.kh * plan.kw * Math.ceil(plan.Cin / TILE);
  const grid = [Math.ceil(jobs / WG), Math.ceil(plan.Cout / TILE)] as const;
  for (let first = 0; first < splits; first += perRound) {
    const parts = Math.min(perRound, splits - first);
    const acc = first === 0 ? accum : 1;
    const k0 = first * DW_SPLIT;
    if (parts === 1) {
      rec.dispatch(kernels.dw_main, {
        read: { dp: doutP, xp: xP },
        write: { dst: dw },
        params: { ...geo, k0, kc: DW_SPLIT, part: 0 },
        grid: [...grid, 1],
        overrides: { WG, ACCUM: acc },
      });
      continue;
    }
    rec.dispatch(kernels.dw_main, {
      read: { dp: doutP, xp: xP },
      write: { dst: partial! },
      params: { ...geo, k0, kc: DW_SPLIT, part: per },
      grid: [...grid, parts],
      overrides: { WG, ACCUM: 0 },
    });
    reduce(rec, geo, partial!, parts, per, dw, acc);
  }
  if (partial) rec.recycle(partial);
}

/** dbias: one workgroup per (chunk of BIAS_CHUNK pixels, channel); several chunks go through partial sums. */
function biasGrad(rec: Recorder, geo: Geometry, plan: Conv2dPlan, dout: Tensor, dbias: Tensor, accum: number): void {
  const chunks = Math.ceil(geo.K / BIAS_CHUNK);
  const grid = [chunks, plan.Cout, 1] as const;
  if (chunks === 1) {
    rec.dispatch(kernels.dbias, {
      read: { dout },
      write: { dst: dbias },
      params: { ...geo, kc: BIAS_CHUNK, part: 0 },
      grid,
      overrides: { BWG, ACCUM: accum },
    });
    return;
  }
  const partial = rec.alloc([chunks, plan.Cout], "f32", "conv2d backward dbias partials");
  rec.dispatch(kernels.dbias, {
    read: { dout },
    write: { dst: partial },
    params: { ...geo, kc: BIAS_CHUNK, part: plan.Cout },
    grid,
    overrides: { BWG, ACCUM: 0 },
  });
  reduce(rec, geo, partial, chunks, plan.Cout, dbias, accum);
  rec.recycle(partial);
}

/** `grad[i] (+)= Σ_{j < parts} partial[j·n + i]`. */
function reduce(
  rec: Recorder,
  geo: Geometry,
  partial: Tensor,
  parts: number,
  n: number,
  grad: Tensor,
  accum: number,
): void {
  const grid = grid1d(Math.ceil(n / BWG), rec.ctx.limits.maxComputeWorkgroupsPerDimension);
  rec.dispatch(kernels.reduce, {
    read: { partial },
    write: { dst: grad },
    params: { ...geo, n, row: grid[0], parts },
    grid,
    overrides: { BWG, ACCUM: accum },
  });
}
