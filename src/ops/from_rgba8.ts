/**
 * Packed RGBA8 pixels (u32, R in the low byte, as `decodePng` returns them) to f32 tensors on the GPU: planar
 * channels with a per-channel affine map, and single-channel masks (see kernels/from_rgba8.wgsl).
 * @module
 */
import src from "../../kernels/from_rgba8.wgsl" with { type: "text" };
import { defineKernels } from "../gpu/kernel.ts";
import { grid1d, type Recorder } from "../gpu/recorder.ts";
import { fmtShape, type Tensor } from "../gpu/tensor.ts";
import { grid1dFor, outputTensor, requireDtype } from "./_alloc.ts";

const K = defineKernels("from_rgba8.wgsl", src, ["planar", "alpha_any", "mask"]);
const WG = 256;

/** How {@linkcode maskFromRgba8} reads a mask: alpha, luminance, or alpha only where an image has a non-opaque pixel. */
export type MaskMode = "alpha" | "luminance" | "auto";
const MASK_MODES: Record<MaskMode, number> = { alpha: 0, luminance: 1, auto: 2 };

/** [B, H, W] of a pixel tensor u32 [H, W] or [B, H, W]; throws naming the op and the shape otherwise. */
function pixelShape(op: string, pixels: Tensor): [number, number, number] {
  requireDtype(op, pixels, ["u32"]);
  const s = pixels.shape;
  if ((s.length !== 2 && s.length !== 3) || s.some((v) => v < 1)) {
    throw new TypeError(`${op}: pixels "${pixels.label}" ${fmtShape(s)} must be non-empty [H, W] or [B, H, W] (u32)`);
  }
  return s.length === 2 ? [1, s[0], s[1]] : [s[0], s[1], s[2]];
}

/** Options of {@linkcode fromRgba8}. */
export interface FromRgba8Options {
  /** Channels taken, in the order R, G, B, A (default 3: alpha dropped, as PIL's `convert("RGB")`). */
  channels?: number;
  /** Per-channel (or one) factor applied to the byte value (default 1). */
  scale?: number | readonly number[];
  /** Per-channel (or one) offset added after scaling (default 0). */
  shift?: number | readonly number[];
  out?: Tensor;
}

/**
 * Records packed RGBA8 pixels u32 [B, H, W] (or [H, W], read as B = 1) → planar f32 [B, C, H, W],
 * `byte_c · scale[c] + shift[c]` (default: the byte values 0…255; `scale: 1 / 127.5, shift: -1` gives [−1, 1]).
 */
export function fromRgba8(rec: Recorder, pixels: Tensor, opts: FromRgba8Options = {}): Tensor {
  const [B, H, W] = pixelShape("fromRgba8", pixels);
  const C = opts.channels ?? 3;
  if (!Number.isInteger(C) || C < 1 || C > 4) {
    throw new RangeError(`fromRgba8: channels must be 1…4 (R, G, B, A), got ${C} for pixels ${fmtShape(pixels.shape)}`);
  }
  const vec = (v: number | readonly number[] | undefined, dflt: number, what: string): number[] => {
    const a = v === undefined ? [dflt] : typeof v === "number" ? [v] : [...v];
    if ((a.length !== 1 && a.length !== C) || !a.every(Number.isFinite)) {
      throw new RangeError(`fromRgba8: ${what} [${a.join(", ")}] must be one finite number or ${C} (one per channel)`);
    }
    return [0, 1, 2, 3].map((c) => a[a.length === 1 ? 0 : Math.min(c, C - 1)]);
  };
  const scale = vec(opts.scale, 1, "scale"), shift = vec(opts.shift, 0, "shift");
  const out = outputTensor(rec, "fromRgba8", [B, C, H, W], "f32", opts.out, [pixels]);
  const n = B * H * W;
  const grid = grid1dFor(rec, n, WG);
  rec.dispatch(K.planar, {
    read: { px: pixels },
    write: { out },
    params: { hw: H * W, n, channels: C, mode: 0, images: B, row: grid[0], scale, shift },
    grid,
    overrides: { WG },
  });
  return out;
}

/**
 * Records the mask of packed RGBA8 pixels u32 [B, H, W] (or [H, W]) → f32 of the same shape in [0, 1]: alpha / 255,
 * luminance (Rec. 601: 0.299 R + 0.587 G + 0.114 B) / 255, or (`"auto"`, the default) per image alpha when some
 * pixel is not opaque (a cut-out), else luminance (white = inside) — decided on the GPU.
 */
export function maskFromRgba8(rec: Recorder, pixels: Tensor, opts: { mode?: MaskMode; out?: Tensor } = {}): Tensor {
  const [B, H, W] = pixelShape("maskFromRgba8", pixels);
  const mode = opts.mode ?? "auto";
  if (!(mode in MASK_MODES)) {
    throw new TypeError(`maskFromRgba8: unknown mode "${mode}" (${Object.keys(MASK_MODES).join(", ")})`);
  }
  const out = outputTensor(rec, "maskFromRgba8", pixels.shape, "f32", opts.out, [pixels]);
  const hw = H * W, n = B * hw;
  const base = { hw, n, channels: 1, mode: MASK_MODES[mode], images: B, scale: [1, 1, 1, 1], shift: [0, 0, 0, 0] };
  let flag: Tensor | undefined;
  if (mode === "auto") {
    flag = rec.alloc([B], "u32", "maskFromRgba8.flag");
    const g = grid1d(B, rec.ctx.limits.maxComputeWorkgroupsPerDimension);
    rec.dispatch(K.alpha_any, {
      read: { px: pixels },
      write: { flag },
      params: { ...base, row: g[0] },
      grid: g,
      overrides: { WG },
    });
  }
  const grid = grid1dFor(rec, n, WG);
  rec.dispatch(K.mask, {
    read: { px: pixels, flag_in: flag ?? rec.ctx.placeholder },
    write: { out },
    params: { ...base, row: grid[0] },
    grid,
    overrides: { WG },
  });
  if (flag) rec.recycle(flag);
  return out;
}
