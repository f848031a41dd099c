/**
 * The TopK SAE's selection, fused with its activation (kernels/sae_encode.wgsl): the k largest of pre, ReLU(pre) or
 * ReLU(pre)·dead per row, as a sparse code. Small k takes the one-pass insertion kernel; larger k the general
 * `topk` op on an activated copy. Both give the same result (descending, ties by the lower index).
 * @module
 */
import src from "../../kernels/sae_encode.wgsl" with { type: "text" };
import deadSrc from "../../kernels/sae_dead.wgsl" with { type: "text" };
import { defineKernel } from "../gpu/kernel.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { assertShape, fmtShape, type Tensor } from "../gpu/tensor.ts";
import { grid1dFor, requireDtype } from "../ops/_alloc.ts";
import { topk } from "../ops/topk.ts";
import { clamp } from "../ops/unary.ts";
import type { SparseCode } from "./sparse.ts";

const kernel = defineKernel("sae_encode.wgsl", src);
const maskKernel = defineKernel("sae_dead.wgsl", deadSrc, "mask");
const WG = 64;
/** Largest k of the insertion kernel (its per-invocation list lives in registers). */
export const ENCODE_KMAX = 64;
/** Loop iterations one invocation may spend (lavapipe stops it after 65,535). */
const BUDGET = 60_000;

/** What the selection ranks. */
export type Activation = "none" | "relu" | "dead";
const MODES: Record<Activation, number> = { none: 0, relu: 1, dead: 2 };

/** Options of {@linkcode encodeTopK}. */
export interface EncodeTopKOptions {
  /** Latents per row. */
  k: number;
  /** Rank pre ("none"), ReLU(pre) ("relu", default) or ReLU(pre)·dead ("dead": AuxK). */
  activation?: Activation;
  /** f32 [n], 1 where a latent is dead: required for "dead". */
  deadMask?: Tensor;
  /** "auto" (default): the insertion kernel for k ≤ 64, `topk` above; or force one. */
  kernel?: "auto" | "insertion" | "topk";
}

/**
 * The k largest activated pre-activations of each row of `pre` [rows, n]: values (activated, descending) and u32
 * latent ids. `pre` itself is left as it is.
 *
 * ```ts ignore
 * const code = encodeTopK(rec, pre, { k: 20 });                                    // TopK(ReLU(pre))
 * const aux = encodeTopK(rec, pre, { k: 256, activation: "dead", deadMask });      // AuxK
 * ```
 */
export function encodeTopK(rec: Recorder, pre: Tensor, opts: EncodeTopKOptions): SparseCode {
  requireDtype("encodeTopK", pre);
  if (pre.shape.length !== 2) throw new TypeError(`encodeTopK: pre ${fmtShape(pre.shape)} must be [rows, n]`);
  const [rows, n] = pre.shape;
  const { k } = opts;
  const act = opts.activation ?? "relu";
  if (!(act in MODES)) throw new TypeError(`encodeTopK: unknown activation "${act}" (none, relu, dead)`);
  if (!Number.isInteger(k) || k < 1 || k > n) {
    throw new RangeError(`encodeTopK: k = ${k} must be an integer in [1, ${n}] for pre ${fmtShape(pre.shape)}`);
  }
  if (act === "dead") {
    if (!opts.deadMask) throw new TypeError(`encodeTopK: activation "dead" needs a deadMask (f32 [${n}])`);
    requireDtype("encodeTopK deadMask", opts.deadMask);
    assertShape(`encodeTopK: deadMask "${opts.deadMask.label}"`, opts.deadMask.shape, [n]);
  }
  const choice = opts.kernel ?? "auto";
  if (choice === "topk" || (choice === "auto" && k > ENCODE_KMAX)) {
    if (act === "none") return topk(rec, pre, { k });
    const activated = rec.alloc(pre.shape, "f32", "sae.activated");
    if (act === "relu") clamp(rec, pre, { lo: 0, out: activated });
    else {
      rec.copy(pre, activated);
      maskToDead(rec, activated, opts.deadMask!);
    }
    const code = topk(rec, activated, { k });
    rec.recycle(activated);
    return code;
  }
  if (k > ENCODE_KMAX) throw new RangeError(`encodeTopK: the insertion kernel takes k ≤ ${ENCODE_KMAX}, got ${k}`);
  const seg = Math.floor(BUDGET / k);
  const segs = Math.ceil(n / seg);
  const values = rec.alloc([rows, k], "f32", "sae.code.values");
  const indices = rec.alloc([rows, k], "u32", "sae.code.indices");
  if (rows === 0) return { values, indices };
  const first = segs === 1 ? { values, indices } : {
    values: rec.alloc([rows, segs * k], "f32", "sae.code.cand"),
    indices: rec.alloc([rows, segs * k], "u32", "sae.code.cand_ids"),
  };
  let grid = grid1dFor(rec, rows * segs, WG);
  rec.dispatch(kernel, {
    read: { pre, dead: opts.deadMask ?? rec.ctx.placeholder, cand_ids: rec.ctx.placeholder },
    write: { values: first.values, indices: first.indices },
    params: { rows, len: n, k, seg, segs, row: grid[0] },
    grid,
    overrides: { WG, MODE: MODES[act], CANDIDATES: 0 },
  });
  if (segs > 1) {
    const len = segs * k;
    if (len * k > BUDGET) throw new RangeError(`encodeTopK: n = ${n} is too long for k = ${k} (split the rows)`);
    grid = grid1dFor(rec, rows, WG);
    rec.dispatch(kernel, {
      read: { pre: first.values, dead: rec.ctx.placeholder, cand_ids: first.indices },
      write: { values, indices },
      params: { rows, len, k, seg: len, segs: 1, row: grid[0] },
      grid,
      overrides: { WG, MODE: 0, CANDIDATES: 1 },
    });
    rec.recycle(first.values, first.indices);
  }
  return { values, indices };
}

/** `pre[r, j] = max(pre[r, j], 0) · dead[j]` in place: the AuxK input for `topk` (kernels/sae_dead.wgsl `mask`). */
export function maskToDead(rec: Recorder, pre: Tensor, deadMask: Tensor): void {
  const [B, n] = pre.shape;
  const grid = grid1dFor(rec, B * n, 256);
  rec.dispatch(maskKernel, {
    read: { dead: deadMask },
    write: { pre },
    params: { rows: B, k: 0, n, row: grid[0], threshold: 0, dead_steps: 0 },
    grid,
  });
}
