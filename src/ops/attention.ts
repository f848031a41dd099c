/**
 * Multi-head scaled dot-product attention (self- and cross-attention, optional causal mask) with an online
 * softmax, and its backward pass: memory stays O(tokens · head dim), the [Nq, Nk] score matrix is never stored.
 * @module
 */
import src from "../../kernels/attention.wgsl" with { type: "text" };
import bwdSrc from "../../kernels/attention_bwd.wgsl" with { type: "text" };
import commonSrc from "../../kernels/_attention_common.wgsl" with { type: "text" };
import { defineKernels, includeWgsl, type KernelSpec } from "../gpu/kernel.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { fmtShape, type Tensor } from "../gpu/tensor.ts";
import { grid1dFor, outputTensor, requireDtype } from "./_alloc.ts";

const snippets = { "_attention_common.wgsl": commonSrc };
const kernels = defineKernels(
  "attention.wgsl",
  includeWgsl("attention.wgsl", src, snippets),
  ["main", "naive"] as const,
);
const bwdKernels = defineKernels(
  "attention_bwd.wgsl",
  includeWgsl("attention_bwd.wgsl", bwdSrc, snippets),
  ["delta_main", "dkv_main", "dq_main", "dkv_naive", "dq_naive"] as const,
);

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
  const lse = opts.saveLse ? rec.alloc([B, heads, nq], "f32", "attention.lse") : rec.alloc([1], "f32", "unused lse");
  if (!opts.saveLse) rec.releaseAfterSubmit(lse);

  const naive = opts.variant === "naive";
  const tileBytes = Math.min(TILE_BYTES, ctx.limits.maxComputeWorkgroupStorageSize);
  const dh4 = Math.ceil(dh / 4), dv4 = Math.ceil(dv / 4);
  const bk = Math.max(1, Math.min(MAX_BK, Math.floor(tileBytes / (16 * (dh4 + dv4)))));
  const span = opts.keysPerDispatch ?? keysPerDispatch(naive, dh4, dv4, bk);
  // Causal rows never see keys past the last query, so those key ranges need no dispatch.
  const kEnd = opts.causal ? Math.min(nk, nq) : nk;
  const passes = Math.max(1, Math.ceil(kEnd / span));
  const state = passes > 1 ? rec.alloc([B, heads, nq, 2], "f32", "attention.state") : rec.alloc([1], "f32", "unused");
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

/** Validates the inputs and options of {@linkcode attention} (messages start with `op`); returns the sizes. */
function checkAttention(
  { q, k, v }: AttentionInputs,
  opts: Pick<AttentionOptions, "heads" | "scale" | "keysPerDispatch">,
  op = "attention",
) {
  for (const [name, t] of [["q", q], ["k", k], ["v", v]] as const) {
    requireDtype(`${op} ${name}`, t);
    if (t.shape.length !== 3) {
      throw new TypeError(`${op}: ${name} "${t.label}" has shape ${fmtShape(t.shape)}, expected [B, tokens, C]`);
    }
  }
  const { heads } = opts;
  if (!Number.isInteger(heads) || heads < 1) {
    throw new RangeError(`${op}: heads must be a positive integer, got ${heads}`);
  }
  const [B, nq, cq] = q.shape, [, nk, ck] = k.shape, [, , cv] = v.shape;
  const qs = fmtShape(q.shape), ks = fmtShape(k.shape), vs = fmtShape(v.shape);
  if (k.shape[0] !== B || v.shape[0] !== B) {
    throw new TypeError(`${op}: batch sizes differ: q ${qs}, k ${ks}, v ${vs}`);
  }
  if (ck !== cq) throw new TypeError(`${op}: q ${qs} and k ${ks} must have the same channels (heads·dh)`);
  if (v.shape[1] !== nk) throw new TypeError(`${op}: k ${ks} and v ${vs} must have the same tokens`);
  if (cq % heads !== 0 || cv % heads !== 0) {
    throw new RangeError(`${op}: channels of q ${qs} and v ${vs} must divide into ${heads} heads`);
  }
  const dh = cq / heads, dv = cv / heads;
  if (dh < 1 || dv < 1 || dh > ATTENTION_MAX_HEAD_DIM || dv > ATTENTION_MAX_HEAD_DIM) {
    throw new RangeError(
      `${op}: head dims ${dh} (q ${qs}) and ${dv} (v ${vs}) with ${heads} heads must lie in ` +
        `1…${ATTENTION_MAX_HEAD_DIM}`,
    );
  }
  if (nk < 1 && nq > 0) throw new RangeError(`${op}: k ${ks} has no tokens; a softmax over no keys is undefined`);
  const span = opts.keysPerDispatch;
  if (span !== undefined && (!Number.isInteger(span) || span < 1)) {
    throw new RangeError(`${op}: keysPerDispatch must be a positive integer, got ${span}`);
  }
  if (opts.scale !== undefined && !Number.isFinite(opts.scale)) {
    throw new RangeError(`${op}: scale must be finite, got ${opts.scale}`);
  }
  return { B, nq, nk, heads, dh, dv };
}

// ---- backward ----

/** Owned rows per workgroup of the backward kernels (one invocation each). */
const BWD_WG = 64;
/** Most streamed rows staged per tile in the backward kernels. */
const BWD_MAX_BT = 64;

/**
 * Streamed rows (queries for dK/dV, keys for dQ) one backward dispatch may cover within {@linkcode LOOP_BUDGET},
 * by the same worst-case count as {@linkcode keysPerDispatch}. Both kernels run the same loops per streamed row:
 * s = q·k over dh, dP = dO·v over dv, the gradient update over dh (dV's update shares the dv loop).
 */
function rowsPerDispatch(naive: boolean, dh4: number, dv4: number, bt: number): number {
  const load = 6;
  const perRow = 1 + 2 * dh4 + dv4;
  if (naive) return Math.max(1, Math.floor(LOOP_BUDGET / (perRow + load * (2 * dh4 + dv4))));
  const staging = load * (Math.ceil((bt * dh4) / BWD_WG) + Math.ceil((bt * dv4) / BWD_WG)) +
    Math.ceil(bt / BWD_WG);
  return bt * Math.max(1, Math.floor(LOOP_BUDGET / (1 + staging + bt * perRow)));
}

/** What {@linkcode attentionBackward} reads: the forward's inputs, its output and lse, and the output's gradient. */
export interface AttentionBackwardInputs extends AttentionInputs {
  /** The forward output [B, Nq, heads·dv]. */
  o: Tensor;
  /** The forward's logsumexp [B, heads, Nq] (`attention(..., { saveLse: true })`). */
  lse: Tensor;
  /** Gradient of the loss with respect to the output, [B, Nq, heads·dv]. */
  dout: Tensor;
}

/** Options of {@linkcode attentionBackward}. */
export interface AttentionBackwardOptions {
  /** Number of heads, as in the forward. */
  heads: number;
  /** As in the forward: query i attends to keys j ≤ i only. */
  causal?: boolean;
  /** As in the forward; defaults to 1/√dh. */
  scale?: number;
  /** Gradient of q [B, Nq, heads·dh] to write; not computed when absent. */
  dq?: Tensor;
  /** Gradient of k [B, Nk, heads·dh] to write; not computed when absent. */
  dk?: Tensor;
  /** Gradient of v [B, Nk, heads·dv] to write; not computed when absent. */
  dv?: Tensor;
  /** Add into dq, dk, dv (default true); false overwrites them, so they need no zeroing. */
  accumulate?: boolean;
  /** Kernel version: "tiled" (v2, default) or "naive" (v1, the GPU-side oracle used by tests and benches). */
  variant?: "tiled" | "naive";
  /**
   * Queries (dK/dV kernel) and keys (dQ kernel) per dispatch (default: sized so no invocation loops too long;
   * tests set it to exercise the split).
   */
  tokensPerDispatch?: number;
}

/** The gradients {@linkcode attentionBackward} wrote: those given in its options. */
export interface AttentionGrads {
  dq?: Tensor;
  dk?: Tensor;
  dv?: Tensor;
}

/**
 * Backward of {@linkcode attention} (FlashAttention-2 style, docs/attention.md): from q, k, v, the forward output o,
 * its lse and dout = ∂L/∂o, adds ∂L/∂q, ∂L/∂k, ∂L/∂v into the tensors given as `dq`, `dk`, `dv` (overwrites them with
 * `accumulate: false`). Gradients not given are not computed. Scratch: D = rowsum(dout ∘ o), [B, heads, Nq]; nothing
 * of size Nq·Nk is allocated.
 *
 * @example Gradients of self-attention at SD's 64×64 latent
 * ```ts ignore
 * const { out, lse } = attention(rec, { q, k, v }, { heads: 8, saveLse: true });
 * // … later, with dout = ∂L/∂out and zeroed or fresh gradient tensors:
 * attentionBackward(rec, { q, k, v, o: out, lse, dout }, { heads: 8, dq, dk, dv, accumulate: false });
 * ```
 */
export function attentionBackward(
  rec: Recorder,
  inputs: AttentionBackwardInputs,
  opts: AttentionBackwardOptions,
): AttentionGrads {
  const op = "attentionBackward";
  const { q, k, v, o, lse, dout } = inputs;
  const { B, nq, nk, heads, dh, dv } = checkAttention(inputs, opts, op);
  const vShape = [B, nq, heads * dv], statShape = [B, heads, nq];
  for (const [name, t, want] of [["o", o, vShape], ["dout", dout, vShape], ["lse", lse, statShape]] as const) {
    requireDtype(`${op} ${name}`, t);
    if (t.shape.length !== want.length || t.shape.some((d, i) => d !== want[i])) {
      throw new TypeError(
        `${op}: ${name} "${t.label}" has shape ${fmtShape(t.shape)}, expected ${fmtShape(want)} for q ` +
          `${fmtShape(q.shape)}, v ${fmtShape(v.shape)} and ${heads} heads`,
      );
    }
  }
  const span = opts.tokensPerDispatch;
  if (span !== undefined && (!Number.isInteger(span) || span < 1)) {
    throw new RangeError(`${op}: tokensPerDispatch must be a positive integer, got ${span}`);
  }
  const read = { q, k, v, o, lse, dout };
  const grads: AttentionGrads = {};
  for (const [name, given, like] of [["dq", opts.dq, q], ["dk", opts.dk, k], ["dv", opts.dv, v]] as const) {
    if (given) grads[name] = outputTensor(rec, `${op} ${name}`, like.shape, "f32", given, Object.values(read));
  }
  const ctx = rec.ctx;
  const maxDim = ctx.limits.maxComputeWorkgroupsPerDimension;
  const gridQ = [Math.ceil(nq / BWD_WG), heads, B] as const, gridK = [Math.ceil(nk / BWD_WG), heads, B] as const;
  if ([...gridQ, ...gridK].some((n) => n > maxDim)) {
    throw new RangeError(
      `${op}: q ${fmtShape(q.shape)}, k ${fmtShape(k.shape)} with ${heads} heads need grids of [${gridQ}] and ` +
        `[${gridK}] workgroups; the device allows ${maxDim} per dimension`,
    );
  }
  if (!grads.dq && !grads.dk && !grads.dv) return grads;

  const unused = () => {
    const t = ctx.tensor([1], "f32", "unused gradient");
    rec.releaseAfterSubmit(t);
    return t;
  };
  const delta = rec.alloc(statShape, "f32", "attention.delta");
  rec.releaseAfterSubmit(delta);
  const scale = opts.scale ?? 1 / Math.sqrt(dh);
  const params = {
    nq,
    nk,
    heads,
    causal: opts.causal ? 1 : 0,
    q_row: heads * dh,
    v_row: heads * dv,
    s_begin: 0,
    s_end: 0,
    rows: B * heads * nq,
    row: 0,
    scale,
    scale_log2: scale * Math.LOG2E,
  };
  const deltaGrid = grid1dFor(rec, B * heads * nq, BWD_WG);
  rec.dispatch(bwdKernels.delta_main, {
    read,
    write: { delta, dq: unused(), dk: unused(), dv: unused() },
    params: { ...params, row: deltaGrid[0] },
    grid: deltaGrid,
    overrides: { DV: dv, WG: BWD_WG },
  });

  const naive = opts.variant === "naive";
  const tileBytes = Math.min(TILE_BYTES, ctx.limits.maxComputeWorkgroupStorageSize);
  const dh4 = Math.ceil(dh / 4), dv4 = Math.ceil(dv / 4);
  const bt = Math.max(1, Math.min(BWD_MAX_BT, Math.floor(tileBytes / (16 * (dh4 + dv4) + 8))));
  const perDispatch = span ?? rowsPerDispatch(naive, dh4, dv4, bt);
  const accumulate = opts.accumulate ?? true;
  /** Dispatches `spec` once per range of `end` streamed rows; only the first may overwrite. */
  const streamed = (
    spec: KernelSpec,
    end: number,
    write: Record<string, Tensor>,
    grid: readonly [number, number, number],
    flags: Record<string, number>,
  ) => {
    const passes = Math.max(1, Math.ceil(end / perDispatch));
    for (let pass = 0; pass < passes; pass++) {
      rec.dispatch(spec, {
        read,
        write: { delta, ...write },
        params: { ...params, s_begin: pass * perDispatch, s_end: Math.min(end, (pass + 1) * perDispatch) },
        grid,
        overrides: { DH: dh, DV: dv, WG: BWD_WG, BT: bt, ACCUM: accumulate || pass > 0 ? 1 : 0, ...flags },
      });
    }
  };
  if (grads.dk || grads.dv) {
    const write = { dq: unused(), dk: grads.dk ?? unused(), dv: grads.dv ?? unused() };
    const flags = { WANT_DK: grads.dk ? 1 : 0, WANT_DV: grads.dv ? 1 : 0 };
    streamed(naive ? bwdKernels.dkv_naive : bwdKernels.dkv_main, nq, write, gridK, flags);
  }
  if (grads.dq) {
    // Causal rows never see keys past the last query, so those key ranges need no dispatch.
    const kEnd = opts.causal ? Math.min(nk, nq) : nk;
    const write = { dq: grads.dq, dk: unused(), dv: unused() };
    streamed(naive ? bwdKernels.dq_naive : bwdKernels.dq_main, kEnd, write, gridQ, {});
  }
  return grads;
}
