/**
 * The sparse kernels of a TopK SAE: decoding k active latents per row by gathering their atoms, and the backward
 * that touches only those latents (kernels/sae_decode.wgsl, kernels/sae_backward.wgsl; derivation in docs/sae.md).
 * @module
 */
import decodeSrc from "../../kernels/sae_decode.wgsl" with { type: "text" };
import bwdSrc from "../../kernels/sae_backward.wgsl" with { type: "text" };
import { defineKernels } from "../gpu/kernel.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { assertShape, fmtShape, type Tensor } from "../gpu/tensor.ts";
import { grid1dFor, outputTensor, requireDtype } from "../ops/_alloc.ts";
import { accumOverride, type AccumulateOptions, gradTensor } from "../ops/_grad.ts";
import { axpy } from "../ops/axpy.ts";
import { binary } from "../ops/binary.ts";
import { matmul } from "../ops/matmul.ts";
import { sum } from "../ops/reduce.ts";

const DEC = defineKernels("sae_decode.wgsl", decodeSrc, ["main", "main4", "densify"]);
const BWD = defineKernels("sae_backward.wgsl", bwdSrc, [
  "dz",
  "dz4",
  "count",
  "colscan",
  "scan",
  "place",
  "seg_dec",
  "seg_dec4",
  "seg_enc",
  "seg_enc4",
]);
const WG = 64;
/** Longest loop one invocation may run (lavapipe ends an invocation after 65,535 loop iterations). */
export const MAX_LOOP = 60_000;
/** The counting sort's table [chunks, n] holds at most this many u32 counters (unless chunks must exceed it). */
const MAX_TABLE = 1 << 22;

/** A row-wise sparse code: the active latents of each row. */
export interface SparseCode {
  /** f32 [rows, k]. */
  values: Tensor;
  /** u32 [rows, k], latent ids < n. */
  indices: Tensor;
}

function checkCode(what: string, code: SparseCode): [rows: number, k: number] {
  requireDtype(what, code.values);
  requireDtype(what, code.indices, ["u32"]);
  if (code.values.shape.length !== 2) {
    throw new TypeError(`${what}: values "${code.values.label}" ${fmtShape(code.values.shape)} must be [rows, k]`);
  }
  assertShape(`${what}: indices "${code.indices.label}" against values`, code.indices.shape, code.values.shape);
  return [code.values.shape[0], code.values.shape[1]];
}

/** Options of {@linkcode sparseDecode}. */
export interface SparseDecodeOptions {
  /** Added to every row, [d] (the SAE's b_pre). */
  bias?: Tensor;
  /** Write here instead of allocating ([rows, d]). */
  out?: Tensor;
  /** The caller guarantees each row's values are sorted descending and ≥ 0 (a ReLU top-k): the walk stops at 0. */
  sorted?: boolean;
}

/**
 * `out[r] = bias + Σ_s values[r, s] · atoms[indices[r, s]]`: the decoder of a TopK SAE on its sparse code, with
 * the dictionary as rows (`atoms` = W_decᵀ [n, d]). Costs k·d multiply-adds per row instead of n·d.
 *
 * ```ts ignore
 * const xHat = sparseDecode(rec, { values, indices }, atoms, { bias: b_pre }); // [4096, 1280] from k = 20
 * ```
 */
export function sparseDecode(rec: Recorder, code: SparseCode, atoms: Tensor, opts: SparseDecodeOptions = {}): Tensor {
  const [rows, k] = checkCode("sparseDecode", code);
  requireDtype("sparseDecode", atoms);
  if (atoms.shape.length !== 2) throw new TypeError(`sparseDecode: atoms ${fmtShape(atoms.shape)} must be [n, d]`);
  const [n, d] = atoms.shape;
  if (opts.bias) {
    requireDtype("sparseDecode", opts.bias);
    assertShape(`sparseDecode: bias (atoms are ${fmtShape(atoms.shape)})`, opts.bias.shape, [d]);
  }
  if (rows * d >= 2 ** 32) throw new RangeError(`sparseDecode: ${rows} rows × ${d} features exceed 2³² elements`);
  const reads = [code.values, code.indices, atoms, ...(opts.bias ? [opts.bias] : [])];
  const out = outputTensor(rec, "sparseDecode", [rows, d], "f32", opts.out, reads);
  if (rows * d === 0) return out;
  if (n === 0) throw new RangeError(`sparseDecode: atoms ${fmtShape(atoms.shape)} hold no atoms`);
  const v4 = d % 4 === 0 && out.offset % 16 === 0 && atoms.offset % 16 === 0 && (opts.bias?.offset ?? 0) % 16 === 0;
  const dv = v4 ? d / 4 : d;
  const grid = grid1dFor(rec, rows * dv, WG);
  const bias = opts.bias ?? rec.ctx.placeholder;
  rec.dispatch(v4 ? DEC.main4 : DEC.main, {
    read: { values: code.values, indices: code.indices, ...(v4 ? { atoms4: atoms, bias4: bias } : { atoms, bias }) },
    write: v4 ? { out4: out } : { out },
    params: { rows, d: dv, k, n, row: grid[0] },
    grid,
    overrides: { WG, HAS_BIAS: opts.bias ? 1 : 0, SORTED: opts.sorted ? 1 : 0 },
  });
  return out;
}

/** What {@linkcode densify} writes at each slot: the value, the ReLU gate (value > 0 ? 1 : 0) or 1. */
export type DensifyMode = "values" | "positive" | "selected";
const DENSE_MODES: Record<DensifyMode, number> = { values: 0, positive: 1, selected: 2 };

/** The dense code z [rows, n] of a sparse one (zeros elsewhere), or its gate or selection mask: the dense path's input. */
export function densify(
  rec: Recorder,
  code: SparseCode,
  n: number,
  opts: { out?: Tensor; mode?: DensifyMode } = {},
): Tensor {
  const [rows, k] = checkCode("densify", code);
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`densify: n = ${n} must be a positive integer`);
  const out = outputTensor(rec, "densify", [rows, n], "f32", opts.out, [code.values, code.indices]);
  rec.zero(out);
  const grid = grid1dFor(rec, rows * k, WG);
  if (rows * k > 0) {
    rec.dispatch(DEC.densify, {
      read: { values: code.values, indices: code.indices },
      write: { dense: out },
      params: { rows, d: 0, k, n, row: grid[0] },
      grid,
      overrides: { WG, DENSE_MODE: DENSE_MODES[opts.mode ?? "values"] },
    });
  }
  return out;
}

/** Inputs of {@linkcode sparseBackward}: the forward's sparse code and what the gradients need. */
export interface SparseBackwardInputs {
  /** Every slot of each row: the k main latents, then the AuxK ones (values f32, indices u32, [B, kt]). */
  slots: SparseCode;
  /** How many of the kt slots per row are main ones (the rest are AuxK slots). */
  k: number;
  /** dL/dx̂ [1, B, d], or dL/dx̂ then dL/dê [2, B, d] when there are AuxK slots (ê the AuxK reconstruction). */
  dx: Tensor;
  /** The decoder's atoms as rows, W_decᵀ [n, d]. */
  atoms: Tensor;
  /** The encoder's centred input x − b_pre [B, d]. */
  xc: Tensor;
  /** The encoder weight [n, d]; read only for db_pre. */
  wEnc: Tensor;
  /** Whether the forward applied ReLU before TopK (then main slots with value ≤ 0 get no gradient). */
  relu: boolean;
}

/** Gradients {@linkcode sparseBackward} writes: any subset (a missing one is not computed). */
export interface SparseBackwardOptions extends AccumulateOptions {
  /** dL/dW_enc [n, d]. */
  dW_enc?: Tensor;
  /** dL/db_enc [n]. */
  db_enc?: Tensor;
  /** dL/dW_dec [d, n]. */
  dW_dec?: Tensor;
  /** dL/db_pre [d] (through the decoder's bias and the encoder's centring). */
  db_pre?: Tensor;
}

/** What {@linkcode sparseBackward} wrote, and the per-slot gradient it computed on the way. */
export interface SparseGradients {
  dW_enc?: Tensor;
  db_enc?: Tensor;
  dW_dec?: Tensor;
  db_pre?: Tensor;
  /** dL/dpre at each slot [B, kt] (after the ReLU gate); recycled into the recorder unless `keepDpre`. */
  dpre: Tensor | null;
}

/**
 * The sparse backward of a TopK SAE (kernels/sae_backward.wgsl): per-slot gradients by gather-dots with the k + ka
 * active atoms, then dW_dec, dW_enc and db_enc by segment sums over a stable counting-sort transpose of the slot
 * list (deterministic, no float atomics), and db_pre from both paths. Cost O(B·kt·d), independent of n.
 *
 * ```ts ignore
 * sparseBackward(rec, { slots, k: 20, dx, atoms, xc, wEnc: W_enc, relu: true }, { dW_enc, db_enc, dW_dec, db_pre });
 * ```
 */
export function sparseBackward(
  rec: Recorder,
  inputs: SparseBackwardInputs,
  opts: SparseBackwardOptions & { keepDpre?: boolean } = {},
): SparseGradients {
  const what = "sparseBackward";
  const { slots, k, dx, atoms, xc, wEnc, relu } = inputs;
  const [B, kt] = checkCode(what, slots);
  for (const t of [dx, atoms, xc, wEnc]) requireDtype(what, t);
  if (atoms.shape.length !== 2) throw new TypeError(`${what}: atoms ${fmtShape(atoms.shape)} must be [n, d]`);
  const [n, d] = atoms.shape;
  if (!Number.isInteger(k) || k < 1 || k > kt) throw new RangeError(`${what}: k = ${k} must be in [1, ${kt}]`);
  const sources = kt > k ? 2 : 1;
  assertShape(`${what}: dx "${dx.label}" (slots ${fmtShape(slots.values.shape)}, k = ${k})`, dx.shape, [
    sources,
    B,
    d,
  ]);
  assertShape(`${what}: xc "${xc.label}"`, xc.shape, [B, d]);
  assertShape(`${what}: wEnc "${wEnc.label}" (atoms ${fmtShape(atoms.shape)})`, wEnc.shape, [n, d]);
  if (2 * B > MAX_LOOP) throw new RangeError(`${what}: batch ${B} exceeds ${MAX_LOOP / 2} rows (split it)`);
  if (d > MAX_LOOP) throw new RangeError(`${what}: d = ${d} exceeds ${MAX_LOOP}`);
  const reads = [slots.values, slots.indices, dx, atoms, xc, wEnc];
  const dW_enc = gradTensor(what, "dW_enc", opts.dW_enc, [n, d], reads);
  const db_enc = gradTensor(what, "db_enc", opts.db_enc, [n], reads);
  const dW_dec = gradTensor(what, "dW_dec", opts.dW_dec, [d, n], reads);
  const db_pre = gradTensor(what, "db_pre", opts.db_pre, [d], reads);
  const out: SparseGradients = { dW_enc, db_enc, dW_dec, db_pre, dpre: null };
  const E = B * kt;
  if (E === 0 || d === 0) return out;
  const ACCUM = accumOverride(opts);
  const base = { rows: B, d, n, k, kt, chunk: 0, chunks: 0, row: 0 };
  const vals = slots.values, idx = slots.indices;

  // d % 4 = 0: the *4 entries move four features per load (their p.d counts vec4s)
  const v4 = d % 4 === 0;
  const dv = v4 ? d / 4 : d;
  const dpre = rec.alloc([B, kt], "f32", "sae.dpre");
  let grid = grid1dFor(rec, E, WG);
  rec.dispatch(v4 ? BWD.dz4 : BWD.dz, {
    read: v4 ? { vals, idx, dx4: dx, atoms4: atoms } : { vals, idx, dx, atoms },
    write: { dpre_out: dpre },
    params: { ...base, d: dv, row: grid[0] },
    grid,
    overrides: { WG, RELU: +relu },
  });

  // db_pre needs this call's own Σ dpre per latent, which the caller's db_enc may not hold (absent, accumulating)
  const dbFresh = db_pre && (!db_enc || ACCUM) ? rec.alloc([n], "f32", "sae.db_enc") : db_enc;
  if (dW_enc || dbFresh || dW_dec) {
    let chunks = Math.max(1, Math.min(Math.ceil(E / 64), 512, Math.floor(MAX_TABLE / n)));
    let chunk = Math.ceil(E / chunks);
    if (chunk > MAX_LOOP) [chunk, chunks] = [MAX_LOOP, Math.ceil(E / MAX_LOOP)];
    const p = { ...base, chunk, chunks };
    const table = rec.alloc([chunks, n], "u32", "sae.table");
    const total = rec.alloc([n], "u32", "sae.total");
    const start = rec.alloc([n + 1], "u32", "sae.start");
    const list = rec.alloc([E], "u32", "sae.list");
    const srows = rec.alloc([E], "u32", "sae.srows");
    rec.zero(table);
    grid = grid1dFor(rec, chunks, WG);
    rec.dispatch(BWD.count, { read: { vals, idx, dpre }, write: { table }, params: { ...p, row: grid[0] }, grid });
    grid = grid1dFor(rec, n, WG);
    rec.dispatch(BWD.colscan, { write: { table, total }, params: { ...p, row: grid[0] }, grid });
    rec.dispatch(BWD.scan, { read: { totals: total }, write: { start_out: start }, params: p, grid: [1] });
    grid = grid1dFor(rec, chunks, WG);
    rec.dispatch(BWD.place, {
      read: { vals, idx, dpre, start },
      write: { table, list_out: list, srows_out: srows },
      params: { ...p, row: grid[0] },
      grid,
    });
    grid = grid1dFor(rec, n * dv, WG);
    const segParams = { ...p, d: dv, row: grid[0] };
    if (dW_dec) {
      rec.dispatch(v4 ? BWD.seg_dec4 : BWD.seg_dec, {
        read: { list, srows, start, vals, ...(v4 ? { dx4: dx } : { dx }) },
        write: { dw_dec: dW_dec },
        params: segParams,
        grid,
        overrides: { WG, ACCUM },
      });
    }
    if (dW_enc || dbFresh) {
      const dwEnc = dW_enc ?? rec.ctx.placeholder;
      rec.dispatch(v4 ? BWD.seg_enc4 : BWD.seg_enc, {
        read: { list, srows, start, dpre, ...(v4 ? { xc4: xc } : { xc }) },
        write: { ...(v4 ? { dw_enc4: dwEnc } : { dw_enc: dwEnc }), db_enc: dbFresh ?? rec.ctx.placeholder },
        params: segParams,
        grid,
        overrides: {
          WG,
          ACCUM,
          ACCUM_DB: dbFresh === db_enc ? ACCUM : 0,
          HAS_DW: dW_enc ? 1 : 0,
          HAS_DB: dbFresh ? 1 : 0,
        },
      });
    }
    rec.recycle(table, total, start, list, srows);
  }
  if (db_enc && dbFresh !== db_enc) axpy(rec, db_enc, dbFresh!);
  if (db_pre) {
    // Σ_r dx̂[r] − W_encᵀ · Σ_slots dpre
    const colsum = sum(rec, { ...dx, shape: [B, d] }, { axis: 0 });
    const back = matmul(rec, { ...dbFresh!, shape: [1, n] }, wEnc, { out: rec.alloc([1, d], "f32", "sae.wtdb") });
    const part = binary(rec, "sub", colsum, { ...back, shape: [d] });
    if (ACCUM) axpy(rec, db_pre, part);
    else rec.copy(part, db_pre, 4 * d);
    rec.recycle(colsum, back, part);
  }
  if (dbFresh && dbFresh !== db_enc) rec.recycle(dbFresh);
  if (opts.keepDpre) out.dpre = dpre;
  else rec.recycle(dpre);
  return out;
}
