/**
 * Multi-head scaled dot-product attention (self- and cross-attention, optional causal mask) with an online
 * softmax: memory stays O(tokens · head dim), the [Nq, Nk] score matrix is never stored.
 * @module
 */
import src from "../../kernels/attention.wgsl" with { type: "text" };
import { defineKernels } from "../gpu/kernel.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { fmtShape, type Tensor } from "../gpu/tensor.ts";
import { outputTensor, requireDtype } from "./_alloc.ts";

const kernels = defineKernels("attention.wgsl", src, ["main", "naive"] as const);

/** Largest head dim the kernel supports (its private arrays have a constant size). */
export const ATTENTION_MAX_HEAD_DIM = 256;
const MAX_BK = 64;
/** Query rows per workgroup (one invocation each). */
const BQ = 64;
/** Workgroup memory the K/V tiles may use: WebGPU's default limit, so the same tiles run everywhere. */
const TILE_BYTES = 16384;
/**
 * Loop iterations one invocation may run per dispatch, by a worst-case count (no loop unrolled). Mesa's llvmpipe
 * (lavapipe) silently ends an invocation after 65535 loop iterations in total, so long key ranges are split over
 * dispatches that carry the softmax state; this budget keeps a wide margin below that cap.
 */
const LOOP_BUDGET = 16384;

/** Keys one dispatch may cover within {@linkcode LOOP_BUDGET} (a multiple of the tile for the tiled kernel). */
function keysPerDispatch(naive: boolean, dh4: number, dv4: number, bk: number): number {
  const load = 6; // a vec4 gathered from global memory: a c4-loop pass plus the element loop (measured on lavapipe)
  if (naive) return Math.max(1, Math.floor(LOOP_BUDGET / (1 + load * (dh4 + dv4))));
  const staging = load * (Math.ceil((bk * dh4) / BQ) + Math.ceil((bk * dv4) / BQ));
  const perTile = 1 + staging + bk * (2 + dh4 + dv4) + dv4;
  return bk * Math.max(1, Math.floor(LOOP_BUDGET / perTile));
}

/** The query, key and value tensors of {@linkcode attention}, in diffusers' pre-split layout [B, tokens, C]. */
export interface AttentionInputs {
  /** Queries [B, Nq, heads·dh]. */
  q: Tensor;
  /** Keys [B, Nk, heads·dh]. */
  k: Tensor;
  /** Values [B, Nk, heads·dv]. */
  v: Tensor;
}

/** Options of {@linkcode attention}. */
export interface AttentionOptions {
  /** Number of heads; the channel dims of q, k and v split evenly into them. */
  heads: number;
  /** Query i attends to keys j ≤ i only (PyTorch's `is_causal`, aligned top-left when Nq ≠ Nk). */
  causal?: boolean;
  /** Multiplies the scores q·k; defaults to 1/√dh. */
  scale?: number;
  /** Write the result here [B, Nq, heads·dv] instead of allocating; must not share a buffer with q, k or v. */
  out?: Tensor;
  /** Also return lse[b, h, i] = log Σ_j exp(scale · q_i·k_j), [B, heads, Nq], which the backward pass needs. */
  saveLse?: boolean;
  /** Kernel version: "tiled" (v2, default) or "naive" (v1, the GPU-side oracle used by tests and benches). */
  variant?: "tiled" | "naive";
  /** Keys per dispatch (default: sized so no invocation loops too long; tests set it to exercise the split). */
  keysPerDispatch?: number;
}

/** What {@linkcode attention} returns when `saveLse` is set. */
export interface AttentionWithLse {
  /** Attention output [B, Nq, heads·dv]. */
  out: Tensor;
  /** Per-row logsumexp of the scaled scores [B, heads, Nq]. */
  lse: Tensor;
}

/**
 * `softmax(scale · Q Kᵀ [+ causal mask]) V` per batch and head, f32, in the layout diffusers' `Attention` has before
 * its head split: q [B, Nq, heads·dh], k [B, Nk, heads·dh], v [B, Nk, heads·dv] → out [B, Nq, heads·dv].
 * Returns the output, or `{ out, lse }` with `saveLse: true`.
 *
 * @example Self-attention at SD's 64×64 latent (320 channels, 8 heads of 40)
 * ```ts ignore
 * const out = attention(rec, { q, k, v }, { heads: 8 }); // q, k, v: [2, 4096, 320]
 * ```
 */
export function attention(
  rec: Recorder,
  inputs: AttentionInputs,
  opts: AttentionOptions & { saveLse: true },
): AttentionWithLse;
export function attention(rec: Recorder, inputs: AttentionInputs, opts: AttentionOptions & { saveLse?: false }): Tensor;
export function attention(rec: Recorder, inputs: AttentionInputs, opts: AttentionOptions): Tensor | AttentionWithLse;
export function attention(rec: Recorder, inputs: AttentionInputs, opts: AttentionOptions): Tensor | AttentionWithLse {
  const { q, k, v } = inputs;
  const { B, nq, nk, heads, dh, dv } = checkAttention(inputs, opts);
  const ctx = rec.ctx;
  const maxDim = ctx.limits.maxComputeWorkgroupsPerDimension;
  const grid = [Math.ceil(nq / BQ), heads, B] as const;
  if (grid.some((n) => n > maxDim)) {
    throw new RangeError(
      `attention: q ${fmtShape(q.shape)} with ${heads} heads needs a grid of [${grid}] workgroups; ` +
        `the device allows ${maxDim} per dimension`,
    );
  }
  const out = outputTensor(rec, "attention", [B, nq, heads * dv], "f32", opts.out, [q, k, v]);
  const lse = opts.saveLse ? ctx.tensor([B, heads, nq], "f32", "attention.lse") : ctx.tensor([1], "f32", "unused lse");
  if (!opts.saveLse) rec.releaseAfterSubmit(lse);

  const naive = opts.variant === "naive";
  const tileBytes = Math.min(TILE_BYTES, ctx.limits.maxComputeWorkgroupStorageSize);
  const dh4 = Math.ceil(dh / 4), dv4 = Math.ceil(dv / 4);
  const bk = Math.max(1, Math.min(MAX_BK, Math.floor(tileBytes / (16 * (dh4 + dv4)))));
  const span = opts.keysPerDispatch ?? keysPerDispatch(naive, dh4, dv4, bk);
  // Causal rows never see keys past the last query, so those key ranges need no dispatch.
  const kEnd = opts.causal ? Math.min(nk, nq) : nk;
  const passes = Math.max(1, Math.ceil(kEnd / span));
  const state = passes > 1 ? ctx.tensor([B, heads, nq, 2], "f32", "attention.state") : ctx.tensor([1], "f32", "unused");
  rec.releaseAfterSubmit(state);
  for (let pass = 0; pass < passes; pass++) {
    rec.dispatch(naive ? kernels.naive : kernels.main, {
      read: { q, k, v },
      write: { out, lse, state },
      params: {
        nq,
        nk,
        heads,
        causal: opts.causal ? 1 : 0,
        q_row: heads * dh,
        v_row: heads * dv,
        k_begin: pass * span,
        k_end: Math.min(kEnd, (pass + 1) * span),
        first: pass === 0 ? 1 : 0,
        last: pass === passes - 1 ? 1 : 0,
        save_lse: opts.saveLse ? 1 : 0,
        scale_log2: (opts.scale ?? 1 / Math.sqrt(dh)) * Math.LOG2E,
      },
      grid,
      overrides: { DH: dh, DV: dv, BQ, BK: bk },
    });
  }
  return opts.saveLse ? { out, lse } : out;
}

/** Validates the inputs and options of {@linkcode attention}; returns the sizes. */
function checkAttention({ q, k, v }: AttentionInputs, opts: AttentionOptions) {
  for (const [name, t] of [["q", q], ["k", k], ["v", v]] as const) {
    requireDtype(`attention ${name}`, t);
    if (t.shape.length !== 3) {
      throw new TypeError(`attention: ${name} "${t.label}" has shape ${fmtShape(t.shape)}, expected [B, tokens, C]`);
    }
  }
  const { heads } = opts;
  if (!Number.isInteger(heads) || heads < 1) {
    throw new RangeError(`attention: heads must be a positive integer, got ${heads}`);
  }
  const [B, nq, cq] = q.shape, [, nk, ck] = k.shape, [, , cv] = v.shape;
  const qs = fmtShape(q.shape), ks = fmtShape(k.shape), vs = fmtShape(v.shape);
  if (k.shape[0] !== B || v.shape[0] !== B) {
    throw new TypeError(`attention: batch sizes differ: q ${qs}, k ${ks}, v ${vs}`);
  }
  if (ck !== cq) throw new TypeError(`attention: q ${qs} and k ${ks} must have the same channels (heads·dh)`);
  if (v.shape[1] !== nk) throw new TypeError(`attention: k ${ks} and v ${vs} must have the same tokens`);
  if (cq % heads !== 0 || cv % heads !== 0) {
    throw new RangeError(`attention: channels of q ${qs} and v ${vs} must divide into ${heads} heads`);
  }
  const dh = cq / heads, dv = cv / heads;
  if (dh < 1 || dv < 1 || dh > ATTENTION_MAX_HEAD_DIM || dv > ATTENTION_MAX_HEAD_DIM) {
    throw new RangeError(
      `attention: head dims ${dh} (q ${qs}) and ${dv} (v ${vs}) with ${heads} heads must lie in ` +
        `1…${ATTENTION_MAX_HEAD_DIM}`,
    );
  }
  if (nk < 1 && nq > 0) throw new RangeError(`attention: k ${ks} has no tokens; a softmax over no keys is undefined`);
  const span = opts.keysPerDispatch;
  if (span !== undefined && (!Number.isInteger(span) || span < 1)) {
    throw new RangeError(`attention: keysPerDispatch must be a positive integer, got ${span}`);
  }
  if (opts.scale !== undefined && !Number.isFinite(opts.scale)) {
    throw new RangeError(`attention: scale must be finite, got ${opts.scale}`);
  }
  return { B, nq, nk, heads, dh, dv };
}
