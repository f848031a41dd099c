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
import { saeEncode } from "./model.ts";
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

/** Default budget of one encode chunk's largest buffer (the pre-activations [rows, n], or the rows [rows, C]). */
export const POSITION_CHUNK_BYTES = 64 << 20;

/** Options of {@linkcode encodePositions}. */
export interface EncodePositionsOptions {
  /** Batch items encoded (default all of `x`). */
  batch?: readonly [number, number];
  layout?: ActivationLayout;
  /**
   * Bytes one chunk's largest buffer may take (default {@linkcode POSITION_CHUNK_BYTES}, never more than the
   * device's `maxStorageBufferBindingSize`): positions are encoded in chunks of rows that fit, with the same result
   * as one pass.
   */
  chunkBytes?: number;
}

/**
 * Records the SAE code of every position of `x`'s batch range `batch` (default all of it). The code's tensors are
 * allocated on `rec` (pooled): recycle them when done. Large ranges (a CFG batch at a fine grid: images·H·W rows ×
 * n latents) are encoded in chunks of rows whose buffers fit `chunkBytes` and the binding limit.
 *
 * ```ts ignore
 * const code = encodePositions(rec, sae, delta, { batch: [1, 2] }); // the cond half of a CFG pair
 * ```
 */
export function encodePositions(rec: Recorder, sae: Sae, x: Tensor, opts: EncodePositionsOptions = {}): PositionCode {
  requireDtype("encodePositions", x);
  const layout = opts.layout ?? "nchw";
  const batch = opts.batch ?? [0, x.shape[0]];
  const g = positionGrid("encodePositions", x, layout, batch, sae.config.d);
  const { images, channels: C, hw, per } = g;
  const { nLatents: n, k } = sae.config;
  const rows = images * hw;
  const limits = rec.ctx.limits;
  const budget = Math.min(opts.chunkBytes ?? POSITION_CHUNK_BYTES, limits.maxStorageBufferBindingSize);
  if (!(budget > 0)) throw new RangeError(`encodePositions: chunkBytes ${opts.chunkBytes} is not a positive size`);
  // rows per encode chunk: the widest per-row buffer is pre [rows, n] (or the rows themselves when C > n)
  const chunk = Math.max(1, Math.floor(budget / (4 * Math.max(n, C))));
  // whole images per range (a range's rows are permuted together); one image split into chunks when it is larger
  const group = Math.max(1, Math.floor(chunk / hw));
  const align = limits.minStorageBufferOffsetAlignment;
  /** A tensor of `bytes` at byte `offset` of `t`: a view when the offset suits a binding, else a copy. */
  const slice = (t: Tensor, offset: number, shape: number[], label: string): [Tensor, boolean] => {
    if (offset % align === 0) return [{ ...t, offset, shape }, false];
    const c = rec.alloc(shape, "f32", label);
    if (numel(shape) > 0) rec.copy({ ...t, offset }, c, numel(shape) * 4);
    return [c, true];
  };
  /** Encodes items [i0, i1) of the range: their rows, chunked when they exceed `chunk`; `emit` gets each code. */
  const encodeItems = (i0: number, i1: number, emit: (row: number, code: SparseCode) => void) => {
    const m = i1 - i0, mRows = m * hw;
    const [range, copied] = slice(x, x.offset + (batch[0] + i0) * per * 4, [m, per], "sae.positions.range");
    let xr: Tensor;
    if (layout === "nchw") xr = reshape(permute(rec, reshape(range, [m, C, hw]), [0, 2, 1]), [mRows, C]);
    else xr = reshape(range, [mRows, C]);
    for (let r0 = 0; r0 < mRows || r0 === 0; r0 += chunk) {
      const r1 = Math.min(mRows, r0 + chunk);
      const [part, own] = r0 === 0 && r1 === mRows
        ? [xr, false]
        : slice(xr, xr.offset + r0 * C * 4, [r1 - r0, C], "sae.positions.chunk");
      emit(i0 * hw + r0, saeEncode(rec, sae, part));
      if (own) rec.recycle(part);
    }
    if (layout === "nchw") rec.recycle(xr);
    if (copied) rec.recycle(range);
  };
  let code: SparseCode | undefined;
  if (rows <= chunk || images === 0) encodeItems(0, images, (_, c) => code = c);
  else {
    // chunked: each chunk's code copied into its rows of the whole code
    const values = rec.alloc([rows, k], "f32", "sae.positions.values");
    const indices = rec.alloc([rows, k], "u32", "sae.positions.indices");
    for (let i0 = 0; i0 < images; i0 += group) {
      encodeItems(i0, Math.min(images, i0 + group), (row, c) => {
        const bytes = c.values.shape[0] * k * 4;
        rec.copy(c.values, { ...values, offset: values.offset + row * k * 4 }, bytes);
        rec.copy(c.indices, { ...indices, offset: indices.offset + row * k * 4 }, bytes);
        rec.recycle(c.values, c.indices);
      });
    }
    code = { values, indices };
  }
  return { ...code!, ...g };
}
