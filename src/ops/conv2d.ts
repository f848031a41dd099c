/**
 * 2-D convolution, NCHW as PyTorch, computed as an implicit GEMM (see kernels/conv2d.wgsl).
 * @module
 */
import rawSrc from "../../kernels/conv2d.wgsl" with { type: "text" };
import tileSrc from "../../kernels/_tile32.wgsl" with { type: "text" };
import tileFmaSrc from "../../kernels/_tile32_fma.wgsl" with { type: "text" };
import { defineKernels, includeWgsl } from "../gpu/kernel.ts";
import { grid1d, type Recorder } from "../gpu/recorder.ts";
import { assertShape, fmtShape, type Tensor } from "../gpu/tensor.ts";
import { laneSplit, matmul } from "./matmul.ts";
import { defineF16Kernels, requireShaderF16 } from "./_f16.ts";

const src = includeWgsl("conv2d.wgsl", rawSrc, { "_tile32.wgsl": tileSrc, "_tile32_fma.wgsl": tileFmaSrc });

const kernels = defineKernels("conv2d.wgsl", src, ["main", "naive", "pack"]);
/** f16 weights: the pack of w reads `src` as f16, the naive kernel reads `wsrc` as f16. */
const f16Pack = defineF16Kernels("conv2d.wgsl", src, "src", ["pack"]).pack;
const f16Naive = defineF16Kernels("conv2d.wgsl", src, "wsrc", ["naive"]).naive;
const PACK_WG = 256;

/** Which kernel computes the convolution. */
export type Conv2dKernel = "auto" | "tiled" | "naive";

/** Options of {@linkcode conv2d}. */
export interface Conv2dOptions {
  /** Added per output channel, shape [Cout]. */
  bias?: Tensor;
  /** Step between output pixels. Default 1. */
  stride?: 1 | 2;
  /** Zero padding: one number for all sides, or [top, bottom, left, right]. Default 0. */
  padding?: number | readonly [number, number, number, number];
  /** Write here instead of allocating; shape [B, Cout, Ho, Wo]. */
  out?: Tensor;
  /**
   * "auto" (default): the tiled implicit GEMM (a plain GEMM for 1×1 convs when it can), or the naive kernel when
   * Ho·Wo is not a multiple of 4; "naive": the oracle.
   */
  kernel?: Conv2dKernel;
}

/** Resolved geometry of a convolution. */
export interface Conv2dPlan {
  B: number;
  Cin: number;
  H: number;
  W: number;
  Cout: number;
  kh: number;
  kw: number;
  stride: number;
  /** [top, bottom, left, right]. */
  pad: [number, number, number, number];
  Ho: number;
  Wo: number;
  /** Output shape [B, Cout, Ho, Wo]. */
  shape: number[];
}

/** Validates shapes and computes the output size of a convolution of x [B, Cin, H, W] with w [Cout, Cin, kh, kw]. */
export function planConv2d(
  xShape: readonly number[],
  wShape: readonly number[],
  stride = 1,
  padding: number | readonly number[] = 0,
): Conv2dPlan {
  if (xShape.length !== 4 || wShape.length !== 4) {
    throw new TypeError(`conv2d: x ${fmtShape(xShape)} must be [B,Cin,H,W] and w ${fmtShape(wShape)} [Cout,Cin,kh,kw]`);
  }
  const [B, Cin, H, W] = xShape, [Cout, Cw, kh, kw] = wShape;
  if (Cw !== Cin) {
    throw new TypeError(`conv2d: x ${fmtShape(xShape)} has ${Cin} channels, w ${fmtShape(wShape)} expects ${Cw}`);
  }
  if (stride !== 1 && stride !== 2) throw new RangeError(`conv2d: stride ${stride}; 1 or 2 are supported`);
  const pad = (typeof padding === "number" ? [padding, padding, padding, padding] : [...padding]) as Conv2dPlan["pad"];
  if (pad.length !== 4 || pad.some((v) => !Number.isInteger(v) || v < 0)) {
    throw new RangeError(`conv2d: padding ${JSON.stringify(padding)} must be n ≥ 0 or [top, bottom, left, right]`);
  }
  const Ho = Math.floor((H + pad[0] + pad[1] - kh) / stride) + 1;
  const Wo = Math.floor((W + pad[2] + pad[3] - kw) / stride) + 1;
  if (Ho < 1 || Wo < 1) {
    throw new RangeError(`conv2d: kernel ${kh}×${kw} is larger than x ${fmtShape(xShape)} padded by [${pad}]`);
  }
  return { B, Cin, H, W, Cout, kh, kw, stride, pad, Ho, Wo, shape: [B, Cout, Ho, Wo] };
}

/**
 * `out = conv2d(x, w) + bias`, x [B, Cin, H, W], w [Cout, Cin, kh, kw] → [B, Cout, Ho, Wo]. f32; w may be f16 (a
 * weight stored as f16: read as f16, computed in f32; needs the device feature `shader-f16`).
 * Records two small packing dispatches (w and x to channel-last, with scratch released after submit) and the
 * GEMM; a 1×1, stride-1, unpadded conv is one plain matmul instead. Outputs whose Ho·Wo is not a multiple of 4
 * take the naive kernel (correct, ~20× slower).
 *
 * ```ts
 * // the VAE encoder's downsampler: pad right and bottom by one, then 3×3 stride 2
 * const y = conv2d(rec, x, w, { bias, stride: 2, padding: [0, 1, 0, 1] });
 * ```
 */
export function conv2d(rec: Recorder, x: Tensor, w: Tensor, opts: Conv2dOptions = {}): Tensor {
  for (const t of [x, w, opts.bias]) {
    if (t && t.dtype !== "f32" && !(t === w && t.dtype === "f16")) {
      throw new TypeError(`conv2d: "${t.label}" is ${t.dtype}, expected f32${t === w ? " or f16" : ""}`);
    }
  }
  const half = w.dtype === "f16";
  if (half) requireShaderF16(rec.ctx, `conv2d with f16 weight "${w.label}"`);
  const plan = planConv2d(x.shape, w.shape, opts.stride ?? 1, opts.padding ?? 0);
  const { B, Cin, H, W, Cout, kh, kw, stride, pad, Ho, Wo } = plan;
  if (opts.bias) assertShape(`conv2d bias (w is ${fmtShape(w.shape)})`, opts.bias.shape, [Cout]);
  const out = opts.out ?? rec.alloc(plan.shape, "f32", "conv2d");
  assertShape(`conv2d output of x ${fmtShape(x.shape)} and w ${fmtShape(w.shape)}`, out.shape, plan.shape);
  if (out.buffer === x.buffer || out.buffer === w.buffer || out.buffer === opts.bias?.buffer) {
    throw new TypeError(`conv2d: the output "${out.label}" must not alias an input`);
  }
  const N = Ho * Wo;
  const kernel = opts.kernel ?? "auto";
  const bias = opts.bias ?? x;
  const has_bias = +(opts.bias !== undefined);
  const base = { batch: B, Cin, H, W, Wo, Cout, N, stride, pt: pad[0], pl: pad[2], kh, kw, has_bias, lanes_n: 0 };
  const maxDim = rec.ctx.limits.maxComputeWorkgroupsPerDimension;

  // The tiled kernels store 4 pixels at a time along each output row of Ho·Wo pixels.
  if (kernel === "tiled" && N % 4 !== 0) {
    throw new RangeError(
      `conv2d: the tiled kernel needs Ho·Wo = ${Ho}·${Wo} to be a multiple of 4 (x ${fmtShape(x.shape)})`,
    );
  }
  if (kernel === "naive" || N % 4 !== 0) {
    const count = Math.ceil(B * Cout * N / 4);
    const grid = grid1d(Math.ceil(count / 64), maxDim);
    rec.dispatch(half ? f16Naive : kernels.naive, {
      read: { src: x, wsrc: w, bias },
      write: { dst: out },
      params: { ...base, Cp4: 0, count, row: grid[0] },
      grid,
    });
    return out;
  }
  // 1×1, stride 1, no padding: out[b] = w[Cout, Cin] @ x[b] viewed as [Cin, H·W].
  if (kh === 1 && kw === 1 && stride === 1 && pad.every((v) => v === 0) && Cin % 4 === 0) {
    const view = (t: Tensor, shape: number[]): Tensor => ({ ...t, shape });
    const o = view(out, [B, Cout, N]);
    matmul(rec, view(w, [Cout, Cin]), view(x, [B, Cin, N]), { bias: opts.bias, biasPerRow: true, out: o });
    return out;
  }
  // Pack w to [Cout, kh·kw, Cp] and x to [B, H·W, Cp]: K contiguous, channels zero-padded to a multiple of 4.
  const Cp4 = Math.ceil(Cin / 4);
  const pack = (t: Tensor, outer: number, T: number, label: string): Tensor => {
    const packed = rec.alloc([outer, T, 4 * Cp4], "f32", label);
    const count = outer * T * Cp4;
    const grid = grid1d(Math.ceil(count / PACK_WG), maxDim);
    rec.dispatch(t.dtype === "f16" ? f16Pack : kernels.pack, {
      read: { src: t, wsrc: t, bias: t },
      write: { dst: packed },
      params: { ...base, Cin, Cp4, W: T, count, row: grid[0] },
      grid,
    });
    return packed;
  };
  const wp = pack(w, Cout, kh * kw, "conv2d packed w");
  const xp = pack(x, B, H * W, "conv2d packed x");
  const split = laneSplit(Cout, N);
  rec.dispatch(kernels.main, {
    read: { src: xp, wsrc: wp, bias },
    write: { dst: out },
    params: { ...base, Cp4, count: 0, row: 0, lanes_n: split.lanesN },
    grid: checkGrid([...split.grid, B], maxDim, x, w),
  });
  rec.recycle(wp, xp); // scratch: later allocations of this recording may reuse it
  return out;
}

function checkGrid(grid: [number, number, number], maxDim: number, x: Tensor, w: Tensor): [number, number, number] {
  if (grid.some((g) => g > maxDim)) {
    throw new RangeError(
      `conv2d: x ${fmtShape(x.shape)} with w ${fmtShape(w.shape)} needs grid [${grid}]; max ${maxDim}`,
    );
  }
  return grid;
}
