/**
 * The SAE code of a hook activation, one row per spatial position: what steering and layout prediction read. The
 * activation's batch range is laid out as rows ([B·H·W, C], a permute for NCHW), then encoded as the SAE does
 * (`saeEncode`: pre = W_enc (x − b_pre) + b_enc, TopK(ReLU(pre)) or TopK(pre)). Runtime-agnostic.
 * @module
 */
import type { Recorder } from "../gpu/recorder.ts";
import { fmtShape, numel, reshape, type Tensor } from "../gpu/tensor.ts";
import { requireDtype } from "../ops/_alloc.ts";
import { permute } from "../ops/permute.ts";
import { saeEncode } from "./explain.ts";
import type { Sae } from "./model.ts";
import type { SparseCode } from "./sparse.ts";

/** How an activation is laid out: [B, C, H, W] ("nchw") or [B, tokens, C] ("bnc"), as hooks report it. */
export type ActivationLayout = "nchw" | "bnc";

/** The geometry of an activation's batch range. */
export interface PositionGrid {
  /** Batch items covered. */
  images: number;
  /** Channels (must be the SAE's d). */
  channels: number;
  /** Spatial grid [H, W] (a [B, tokens, C] activation counts as [√T, √T] when T is a square, else [1, T]). */
  grid: [number, number];
  /** H·W. */
  hw: number;
  /** Values per batch item. */
  per: number;
}

/** The geometry of `x`'s batch range `batch` in `layout`; throws when it cannot be an SAE input of width `d`. */
export function positionGrid(
  what: string,
  x: Tensor,
  layout: ActivationLayout,
  batch: readonly [number, number],
  d?: number,
): PositionGrid {
  const s = x.shape;
  if (layout === "nchw" ? s.length < 3 : s.length !== 3) {
    throw new TypeError(
      `${what}: activation ${fmtShape(s)} is not ${layout === "nchw" ? "[B, C, H, W]" : "[B, T, C]"}`,
    );
  }
  const channels = layout === "nchw" ? s[1] : s[2];
  const hw = layout === "nchw" ? numel(s.slice(2)) : s[1];
  let grid: [number, number];
  if (layout === "nchw") grid = s.length === 4 ? [s[2], s[3]] : [1, hw];
  else grid = Number.isInteger(Math.sqrt(hw)) ? [Math.sqrt(hw), Math.sqrt(hw)] : [1, hw];
  if (d !== undefined && channels !== d) {
    throw new TypeError(`${what}: activation ${fmtShape(s)} has ${channels} channels; the SAE reads d = ${d}`);
  }
  const [b0, b1] = batch;
  if (!Number.isInteger(b0) || !Number.isInteger(b1) || b0 < 0 || b1 > s[0] || b1 < b0) {
    throw new RangeError(`${what}: batch range [${b0}, ${b1}) is outside activation ${fmtShape(s)}`);
  }
  return { images: b1 - b0, channels, grid, hw, per: channels * hw };
}

/** The code of {@linkcode encodePositions}: rows = image · H·W + position, with the geometry. */
export interface PositionCode extends SparseCode, PositionGrid {}

/**
 * Records the SAE code of every position of `x`'s batch range `batch` (default all of it). The code's tensors are
 * allocated on `rec` (pooled): recycle them when done.
 *
 * ```ts ignore
 * const code = encodePositions(rec, sae, delta, { batch: [1, 2] }); // the cond half of a CFG pair
 * ```
 */
export function encodePositions(
  rec: Recorder,
  sae: Sae,
  x: Tensor,
  opts: { batch?: readonly [number, number]; layout?: ActivationLayout } = {},
): PositionCode {
  requireDtype("encodePositions", x);
  const layout = opts.layout ?? "nchw";
  const batch = opts.batch ?? [0, x.shape[0]];
  const g = positionGrid("encodePositions", x, layout, batch, sae.config.d);
  const { images, channels: C, hw, per } = g;
  const rows = images * hw;
  // the range as its own tensor: a view where the offset suits a binding, else a copy
  const offset = x.offset + batch[0] * per * 4;
  let range: Tensor, copied = false;
  if (offset % rec.ctx.limits.minStorageBufferOffsetAlignment === 0) {
    range = { ...x, offset, shape: [images, per] };
  } else {
    range = rec.alloc([images, per], "f32", "sae.positions.range");
    if (rows > 0) rec.copy({ ...x, offset }, range, images * per * 4);
    copied = true;
  }
  let xr: Tensor;
  if (layout === "nchw") xr = reshape(permute(rec, reshape(range, [images, C, hw]), [0, 2, 1]), [rows, C]);
  else xr = reshape(range, [rows, C]);
  const code = saeEncode(rec, sae, xr);
  if (layout === "nchw") rec.recycle(xr);
  if (copied) rec.recycle(range);
  return { ...code, ...g };
}
