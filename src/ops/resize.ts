/**
 * Image resize (bicubic or bilinear, antialiased like Pillow) with an optional crop window and a fused per-channel
 * affine epilogue: CLIP's image preprocessing on the GPU (see kernels/resize.wgsl).
 * @module
 */
import src from "../../kernels/resize.wgsl" with { type: "text" };
import { defineKernel } from "../gpu/kernel.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { fmtShape, numel, type Tensor } from "../gpu/tensor.ts";
import { grid1dFor, outputTensor, requireDtype } from "./_alloc.ts";

const kernel = defineKernel("resize.wgsl", src);
const WG = 256;
const FILTERS = { bilinear: 0, bicubic: 1 } as const;
const SUPPORT = { bilinear: 1, bicubic: 2 } as const;

/** Resampling filter: bicubic is Keys' cubic with a = −0.5 (Pillow, torchvision with antialias). */
export type ResizeFilter = keyof typeof FILTERS;

/** Options of {@linkcode resize}. */
export interface ResizeOptions {
  /** Output size [height, width]. */
  size: readonly [number, number];
  /** Default "bicubic". */
  filter?: ResizeFilter;
  /** Widen the filter by the downscale factor (Pillow always does; torchvision's `antialias=True`). Default true. */
  antialias?: boolean;
  /**
   * Resize the whole image to this size, then keep the window of `size` at `offset` (a crop, computed without
   * materialising the resized image). Default: `size`.
   */
  resizedSize?: readonly [number, number];
  /** Top-left [row, column] of the window in the resized image. Default [0, 0]. */
  offset?: readonly [number, number];
  /** Per-channel `y = scale[c]·y + shift[c]` applied to the output (at most 4 channels), e.g. mean/std. */
  channelAffine?: { scale: readonly number[]; shift: readonly number[] };
  /** Write here instead of allocating; shape [B, C, size[0], size[1]]. */
  out?: Tensor;
}

/** One axis of a resize: what the kernel's params need. */
function axisPlan(nIn: number, resized: number, antialias: boolean, filter: ResizeFilter) {
  const scale = nIn / resized;
  const fs = antialias ? Math.max(scale, 1) : 1;
  return { scale, support: SUPPORT[filter] * fs, invFs: 1 / fs };
}

/**
 * Resizes images x [B, C, H, W] (f32) to [B, C, h, w] with Pillow's resampling (a separable convolution: a
 * horizontal pass, then a vertical one), optionally as a crop of a larger virtual resize, optionally followed by a
 * per-channel affine. Axes whose size, crop and scale leave them unchanged are not resampled.
 *
 * ```ts ignore
 * // CLIP: short side to 224, centre crop 224×224, then (x − mean) / std
 * const box = centerCropBox(512, 768, 224); // { resizedSize: [224, 336], offset: [0, 56] }
 * const px = resize(rec, images, { size: [224, 224], ...box, channelAffine: { scale, shift } });
 * ```
 */
export function resize(rec: Recorder, x: Tensor, opts: ResizeOptions): Tensor {
  requireDtype("resize", x);
  if (x.shape.length !== 4) throw new TypeError(`resize: x ${fmtShape(x.shape)} must be [B, C, H, W]`);
  const [B, C, H, W] = x.shape;
  const [h, w] = opts.size;
  const [rh, rw] = opts.resizedSize ?? opts.size;
  const [top, left] = opts.offset ?? [0, 0];
  const filter = opts.filter ?? "bicubic";
  if (!(filter in FILTERS)) throw new TypeError(`resize: unknown filter "${filter}" (${Object.keys(FILTERS)})`);
  const ints = [h, w, rh, rw, top, left];
  if (ints.some((v) => !Number.isInteger(v) || v < 0) || h < 1 || w < 1) {
    throw new RangeError(
      `resize: size [${h},${w}], resizedSize [${rh},${rw}] and offset [${top},${left}] must be integers (sizes ≥ 1)`,
    );
  }
  if (top + h > rh || left + w > rw) {
    throw new RangeError(
      `resize: the window [${h},${w}] at [${top},${left}] does not fit the resized image [${rh},${rw}]`,
    );
  }
  if (H < 1 || W < 1) throw new RangeError(`resize: x ${fmtShape(x.shape)} has no pixels`);
  const affine = opts.channelAffine;
  if (affine) {
    if (C > 4) throw new RangeError(`resize: channelAffine supports at most 4 channels; x ${fmtShape(x.shape)}`);
    if (affine.scale.length !== C || affine.shift.length !== C) {
      throw new TypeError(
        `resize: channelAffine needs ${C} scales and shifts for x ${fmtShape(x.shape)}, got ${affine.scale.length} ` +
          `and ${affine.shift.length}`,
      );
    }
  }
  const out = outputTensor(rec, "resize", [B, C, h, w], "f32", opts.out, [x]);
  if (numel(out.shape) === 0) return out;
  const antialias = opts.antialias ?? true;
  const needH = W !== rw || left !== 0 || w !== W;
  const needV = H !== rh || top !== 0 || h !== H;
  const doV = needV || !needH; // at least one pass runs: it writes `out` (and applies the affine)
  const pass = (
    src: Tensor,
    dst: Tensor,
    dims: { outer: number; nIn: number; nOut: number; inner: number; resized: number; start: number },
    last: boolean,
    chanDiv: number,
  ) => {
    const a = axisPlan(dims.nIn, dims.resized, antialias, filter);
    const n = dims.outer * dims.nOut * dims.inner;
    const grid = grid1dFor(rec, n, WG);
    const useAffine = last && affine !== undefined;
    rec.dispatch(kernel, {
      read: { x: src },
      write: { out: dst },
      params: {
        n,
        row: grid[0],
        n_in: dims.nIn,
        n_out: dims.nOut,
        inner: dims.inner,
        start: dims.start,
        channels: C,
        chan_div: chanDiv,
        scale: a.scale,
        support: a.support,
        inv_fs: a.invFs,
        pad: 0,
        mul: useAffine ? affine.scale : [1, 1, 1, 1],
        add: useAffine ? affine.shift : [0, 0, 0, 0],
      },
      grid,
      overrides: { FILTER: FILTERS[filter], AFFINE: useAffine ? 1 : 0, WG },
    });
  };
  let src = x;
  if (needH) {
    const dst = doV ? rec.alloc([B, C, H, w], "f32", "resize.rows") : out;
    pass(src, dst, { outer: B * C * H, nIn: W, nOut: w, inner: 1, resized: rw, start: left }, !doV, H);
    if (doV) rec.releaseAfterSubmit(dst);
    src = dst;
  }
  if (doV) pass(src, out, { outer: B * C, nIn: H, nOut: h, inner: w, resized: rh, start: top }, true, 1);
  return out;
}

/**
 * The resize-then-centre-crop of torchvision's `Resize(size)` + `CenterCrop(size)` (openai/CLIP's preprocessing):
 * the short side becomes `size`, the long side `floor(size · long / short)`, and the crop starts at
 * `round((resized − size) / 2)` (Python's round: halves to even). Spread into {@linkcode ResizeOptions}.
 */
export function centerCropBox(
  height: number,
  width: number,
  size: number,
): { resizedSize: [number, number]; offset: [number, number] } {
  const [short, long] = height <= width ? [height, width] : [width, height];
  const longNew = Math.floor((size * long) / short);
  const [rh, rw] = height <= width ? [size, longNew] : [longNew, size];
  return { resizedSize: [rh, rw], offset: [roundHalfEven((rh - size) / 2), roundHalfEven((rw - size) / 2)] };
}

function roundHalfEven(v: number): number {
  const f = Math.floor(v);
  const d = v - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}
