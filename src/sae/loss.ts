/**
 * Losses and metrics of a TopK SAE on the GPU (kernels/sae_loss.wgsl): the reconstruction loss in the fixture's
 * unscaled form, SDLens' variance-scaled form or Revelio's per-batch normalised form, the AuxK loss (unscaled or
 * normalised), the metrics the trainers log, and dL/dx̂, dL/dê for the backward. No readback.
 * @module
 */
import src from "../../kernels/sae_loss.wgsl" with { type: "text" };
import { defineKernels } from "../gpu/kernel.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { assertShape, fmtShape, type Tensor } from "../gpu/tensor.ts";
import { grid1dFor, requireDtype } from "../ops/_alloc.ts";

const K = defineKernels("sae_loss.wgsl", src, ["stats", "finish", "grad"]);
const WG = 64;
/** Rows one `stats` invocation sums. */
const CHUNK = 128;

/**
 * The reconstruction loss, with e = x − x̂ over a batch of B rows and d features:
 * - `"sum"`: Σ e² / B (summed over features, averaged over rows: the fixture's `mse`, d × the per-element MSE);
 * - `"scaled"`: mseScale · mean(e²), with mseScale = 1 / Var(x) measured once (SDLens' "scaled MSE");
 * - `"normalized"`: mean(e²) / mean((x − mean_rows x)²) per batch (Revelio's k-SAE; equals the FVU), NaN → 0.
 */
export type RecLoss = "sum" | "scaled" | "normalized";

/**
 * The AuxK loss, with a the reconstruction from the dead latents' top-k_aux and e the detached residual:
 * - `"sum"`: Σ (a − e)² / B (the fixture's form);
 * - `"normalized"`: mean((a − e)²) / mean((e − mean_rows e)²), NaN → 0 (SDLens' normalized_mse);
 * - `"none"`: 0 (no AuxK).
 */
export type AuxLoss = "sum" | "normalized" | "none";

const REC_MODE: Record<RecLoss, number> = { sum: 0, scaled: 1, normalized: 2 };
const AUX_MODE: Record<AuxLoss, number> = { sum: 0, normalized: 1, none: 2 };

/** Names of the entries of the scalars tensor, in order (kernels/sae_loss.wgsl, `S_*`). */
export const LOSS_SCALARS = [
  "loss",
  "recLoss",
  "auxLoss",
  "mse",
  "mseElem",
  "fvu",
  "explainedVariance",
  "l0",
  "cRec",
  "cAux",
  "varX",
  "varE",
] as const;

/** The scalars of one batch, by name. */
export type LossScalars = Record<(typeof LOSS_SCALARS)[number], number>;

/** The named scalars from the values of a scalars tensor read back. */
export function lossScalars(data: ArrayLike<number>): LossScalars {
  const out = {} as LossScalars;
  LOSS_SCALARS.forEach((name, i) => (out[name] = data[i]));
  return out;
}

/** Inputs of {@linkcode saeLoss}. */
export interface SaeLossInputs {
  /** The batch [B, d]. */
  x: Tensor;
  /** Its reconstruction [B, d]. */
  xHat: Tensor;
  /** The AuxK reconstruction Σ v·W_dec[:, idx] over the AuxK slots (no bias) [B, d]; absent means 0. */
  auxRecon?: Tensor | null;
  /** The main top-k values [B, k], for L0 (absent: L0 = 0). */
  values?: Tensor;
}

/** Options of {@linkcode saeLoss}. */
export interface SaeLossOptions {
  /** Reconstruction loss form (default "sum"). */
  rec?: RecLoss;
  /** AuxK loss form (default "sum"). Without `auxRecon` the AuxK reconstruction is 0 (no dead latent). */
  aux?: AuxLoss;
  /** Weight of the AuxK loss (default 1/32). */
  auxAlpha?: number;
  /** The factor of the "scaled" form, 1 / Var(x) (default 1). */
  mseScale?: number;
  /** Also write dL/dx̂ (and dL/dê when `auxRecon` is given) for the backward (default true). */
  grad?: boolean;
  /** Write the scalars here (f32 [16]) instead of allocating. */
  scalars?: Tensor;
}

/** What {@linkcode saeLoss} recorded. */
export interface SaeLossResult {
  /** f32 [16]: the {@linkcode LOSS_SCALARS} then zeros. */
  scalars: Tensor;
  /** dL/dx̂ [1, B, d], or dL/dx̂ then dL/dê [2, B, d] with an AuxK reconstruction; null without `grad`. */
  dx: Tensor | null;
}

/**
 * Records the loss, the metrics and (by default) the gradients with respect to the reconstructions.
 *
 * ```ts ignore
 * const { scalars, dx } = saeLoss(rec, { x, xHat, auxRecon, values }, { rec: "scaled", mseScale, aux: "normalized" });
 * ```
 */
export function saeLoss(rec: Recorder, inputs: SaeLossInputs, opts: SaeLossOptions = {}): SaeLossResult {
  const what = "saeLoss";
  const { x, xHat, values } = inputs;
  const auxRecon = inputs.auxRecon ?? null;
  for (const t of [x, xHat, ...(values ? [values] : []), ...(auxRecon ? [auxRecon] : [])]) requireDtype(what, t);
  if (x.shape.length !== 2) throw new TypeError(`${what}: x ${fmtShape(x.shape)} must be [B, d]`);
  const [B, d] = x.shape;
  assertShape(`${what}: xHat "${xHat.label}" against x`, xHat.shape, x.shape);
  if (auxRecon) assertShape(`${what}: auxRecon "${auxRecon.label}" against x`, auxRecon.shape, x.shape);
  if (values && (values.shape.length !== 2 || values.shape[0] !== B)) {
    throw new TypeError(`${what}: values ${fmtShape(values.shape)} must be [${B}, k] (x is ${fmtShape(x.shape)})`);
  }
  if (B === 0 || d === 0) throw new RangeError(`${what}: empty batch ${fmtShape(x.shape)}`);
  const recMode = opts.rec ?? "sum", auxMode = opts.aux ?? "sum";
  if (!(recMode in REC_MODE)) throw new TypeError(`${what}: unknown rec loss "${recMode}" (sum, scaled, normalized)`);
  if (!(auxMode in AUX_MODE)) throw new TypeError(`${what}: unknown aux loss "${auxMode}" (sum, normalized, none)`);
  const alpha = auxMode === "none" ? 0 : opts.auxAlpha ?? 1 / 32;
  const scale = opts.mseScale ?? 1;
  for (const [name, v] of [["auxAlpha", alpha], ["mseScale", scale]] as const) {
    if (!Number.isFinite(v) || v < 0) throw new RangeError(`${what}: ${name} must be finite and ≥ 0, got ${v}`);
  }
  if (opts.scalars) {
    requireDtype(what, opts.scalars);
    assertShape(`${what}: scalars "${opts.scalars.label}"`, opts.scalars.shape, [16]);
  }
  const chunks = Math.ceil(B / CHUNK);
  if (chunks * d > 2 ** 31 || B * d >= 2 ** 31) throw new RangeError(`${what}: batch ${fmtShape(x.shape)} too large`);
  const params = {
    rows: B,
    d,
    chunk: CHUNK,
    chunks,
    k: values?.shape[1] ?? 0,
    row: 0,
    rec_mode: REC_MODE[recMode],
    aux_mode: AUX_MODE[auxMode],
    alpha,
    scale,
  };
  const overrides = { WG, HAS_AUX: auxRecon ? 1 : 0 };
  const aux = auxRecon ?? rec.ctx.placeholder;
  const partial = rec.alloc([chunks, 6, d], "f32", "sae.loss.partial");
  let grid = grid1dFor(rec, chunks * d, WG);
  rec.dispatch(K.stats, {
    read: { x, recon: xHat, aux },
    write: { partial_out: partial },
    params: { ...params, row: grid[0] },
    grid,
    overrides,
  });
  const scalars = opts.scalars ?? rec.alloc([16], "f32", "sae.loss.scalars");
  rec.dispatch(K.finish, {
    read: { partial, values: values ?? rec.ctx.placeholder },
    write: { scalars_out: scalars },
    params,
    grid: [1],
  });
  rec.recycle(partial);
  let dx: Tensor | null = null;
  if (opts.grad ?? true) {
    dx = rec.alloc([auxRecon ? 2 : 1, B, d], "f32", "sae.dx");
    grid = grid1dFor(rec, B * d, WG);
    rec.dispatch(K.grad, {
      read: { x, recon: xHat, aux, scalars },
      write: { dx },
      params: { ...params, row: grid[0] },
      grid,
      overrides,
    });
  }
  return { scalars, dx };
}
