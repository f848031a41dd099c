/**
 * The TopK sparse autoencoder (OpenAI / SDLens form, and Revelio's k-SAE without the ReLU):
 *
 *   pre = W_enc (x − b_pre) + b_enc;   z = TopK(ReLU(pre));   x̂ = W_dec z + b_pre
 *
 * with the tensors named as PyTorch holds them: `W_enc` [n, d], `b_enc` [n], `W_dec` [d, n] (unit columns: the
 * latents' directions), `b_pre` [d]. Encoding is one dense matmul and a row-wise top-k; decoding and the backward
 * are sparse (src/sae/sparse.ts): they touch only the k (+ k_aux) active latents of each row.
 * @module
 */
import decoderNormSrc from "../../kernels/sae_decoder_norm.wgsl" with { type: "text" };
import deadSrc from "../../kernels/sae_dead.wgsl" with { type: "text" };
import type { GpuContext } from "../gpu/context.ts";
import { defineKernels } from "../gpu/kernel.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { assertShape, fmtShape, type Tensor } from "../gpu/tensor.ts";
import { grid1dFor, requireDtype } from "../ops/_alloc.ts";
import type { AccumulateOptions } from "../ops/_grad.ts";
import { binary } from "../ops/binary.ts";
import { concat } from "../ops/concat.ts";
import { matmul } from "../ops/matmul.ts";
import { transpose } from "../ops/permute.ts";
import { maxTopK } from "../ops/topk.ts";
import { clamp } from "../ops/unary.ts";
import { encodeTopK } from "./encode.ts";
import { sparseBackward, type SparseCode, sparseDecode } from "./sparse.ts";

const NORM = defineKernels("sae_decoder_norm.wgsl", decoderNormSrc, ["unit", "unit_project"]);
const DEAD = defineKernels("sae_dead.wgsl", deadSrc, ["mark", "update"]);

/** The shape of a TopK SAE. */
export interface SaeConfig {
  /** Width d of the activations it reads and reconstructs. */
  d: number;
  /** Number of latents n (the dictionary size). */
  nLatents: number;
  /** Latents kept per row by TopK. */
  k: number;
  /** TopK(ReLU(pre)) when true (SDLens / OpenAI); TopK(pre) when false (Revelio's k-SAE: negative values may stay). */
  relu: boolean;
}

/** A config from its required fields: n defaults to 4·d, ReLU to on. Validated. */
export function saeConfig(c: Pick<SaeConfig, "d" | "k"> & Partial<SaeConfig>): SaeConfig {
  const out: SaeConfig = { d: c.d, nLatents: c.nLatents ?? 4 * c.d, k: c.k, relu: c.relu ?? true };
  for (const key of ["d", "nLatents", "k"] as const) {
    if (!Number.isInteger(out[key]) || out[key] < 1) {
      throw new RangeError(`SAE config: ${key} must be a positive integer, got ${out[key]}`);
    }
  }
  if (out.k > out.nLatents) throw new RangeError(`SAE config: k = ${out.k} exceeds nLatents = ${out.nLatents}`);
  if (typeof out.relu !== "boolean") throw new TypeError(`SAE config: relu must be a boolean, got ${out.relu}`);
  return out;
}

/** The four parameters, named as in PyTorch (and in the fixture and saved files). */
export interface SaeParams {
  /** [n, d]. */
  W_enc: Tensor;
  /** [n]. */
  b_enc: Tensor;
  /** [d, n]; its columns are the latents' unit directions. */
  W_dec: Tensor;
  /** [d], the shared pre-encoder / decoder bias. */
  b_pre: Tensor;
}

/** Parameter names in file order. */
export const SAE_PARAM_NAMES = ["W_enc", "b_enc", "W_dec", "b_pre"] as const;

/** The name of one parameter. */
export type SaeParamName = (typeof SAE_PARAM_NAMES)[number];

/** The shape of each parameter for a config. */
export function saeParamShapes(c: SaeConfig): Record<SaeParamName, number[]> {
  return { W_enc: [c.nLatents, c.d], b_enc: [c.nLatents], W_dec: [c.d, c.nLatents], b_pre: [c.d] };
}

/** A TopK SAE: its config and its parameters on the GPU (all zero until initialised or loaded). */
export class Sae {
  readonly config: SaeConfig;
  readonly params: SaeParams;

  constructor(readonly ctx: GpuContext, config: SaeConfig, params?: SaeParams) {
    this.config = saeConfig(config);
    const shapes = saeParamShapes(this.config);
    if (params) {
      for (const name of SAE_PARAM_NAMES) {
        requireDtype(`Sae ${name}`, params[name]);
        assertShape(`Sae parameter "${name}"`, params[name].shape, shapes[name]);
      }
      this.params = params;
    } else {
      const t = (name: SaeParamName) => ctx.persist(ctx.tensor(shapes[name], "f32", name));
      this.params = { W_enc: t("W_enc"), b_enc: t("b_enc"), W_dec: t("W_dec"), b_pre: t("b_pre") };
    }
  }

  /** An SAE from host arrays (e.g. a file's tensors), checked against the config. */
  static fromArrays(ctx: GpuContext, config: SaeConfig, data: Record<SaeParamName, Float32Array>): Sae {
    const c = saeConfig(config);
    const shapes = saeParamShapes(c);
    const params = {} as SaeParams;
    for (const name of SAE_PARAM_NAMES) {
      const want = shapes[name].reduce((a, b) => a * b, 1);
      if (data[name]?.length !== want) {
        throw new TypeError(
          `Sae.fromArrays: "${name}" has ${data[name]?.length ?? "no"} values; config expects ${
            fmtShape(shapes[name])
          }`,
        );
      }
      params[name] = ctx.persist(ctx.upload(data[name], shapes[name], "f32", name));
    }
    return new Sae(ctx, c, params);
  }

  /** Reads the parameters back. */
  async toArrays(): Promise<Record<SaeParamName, Float32Array>> {
    const out = {} as Record<SaeParamName, Float32Array>;
    for (const name of SAE_PARAM_NAMES) out[name] = (await this.ctx.readF32(this.params[name])).slice();
    return out;
  }

  /** Zero-initialised tensors shaped like the parameters (gradients, for instance). */
  zerosLike(prefix = "grad:"): SaeParams {
    const shapes = saeParamShapes(this.config);
    const t = (name: SaeParamName) => this.ctx.persist(this.ctx.tensor(shapes[name], "f32", prefix + name));
    return { W_enc: t("W_enc"), b_enc: t("b_enc"), W_dec: t("W_dec"), b_pre: t("b_pre") };
  }

  /** Frees the parameters. */
  release(): void {
    for (const name of SAE_PARAM_NAMES) this.ctx.release(this.params[name]);
  }
}

/** Options of {@linkcode saeEncode}. */
export interface SaeEncodeOptions {
  /** The selection kernel (see `encodeTopK`; default "auto"). */
  selection?: "auto" | "insertion" | "topk";
  /**
   * Return x − b_pre and the pre-activations (before any ReLU) beside the code instead of recycling them; the caller
   * recycles them into `rec` when done.
   */
  keep?: boolean;
}

/** The code of {@linkcode saeEncode}, with its intermediates when asked to keep them. */
export interface SaeEncoding extends SparseCode {
  /** x − b_pre [B, d] (only with `keep`). */
  xc?: Tensor;
  /** pre = W_enc (x − b_pre) + b_enc [B, n], before any ReLU (only with `keep`). */
  pre?: Tensor;
}

/**
 * The SAE's encoder alone: TopK(ReLU(W_enc (x − b_pre) + b_enc)) (TopK(pre) without the ReLU) of x [B, d] as a
 * sparse code [B, k]. {@linkcode saeForward} encodes with it; steering, layout prediction and explain use it alone.
 */
export function saeEncode(
  rec: Recorder,
  sae: Sae,
  x: Tensor,
  opts: SaeEncodeOptions & { keep: true },
): Required<SaeEncoding>;
export function saeEncode(rec: Recorder, sae: Sae, x: Tensor, opts?: SaeEncodeOptions): SaeEncoding;
export function saeEncode(rec: Recorder, sae: Sae, x: Tensor, opts: SaeEncodeOptions = {}): SaeEncoding {
  const { d, nLatents: n, k, relu } = sae.config;
  requireDtype("saeEncode", x);
  if (x.shape.length !== 2 || x.shape[1] !== d) {
    throw new TypeError(`saeEncode: x ${fmtShape(x.shape)} must be [B, ${d}] for an SAE with d = ${d}`);
  }
  const xc = binary(rec, "sub", x, sae.params.b_pre);
  const pre = matmul(rec, xc, sae.params.W_enc, {
    transB: true,
    bias: sae.params.b_enc,
    out: rec.alloc([x.shape[0], n], "f32", "sae.pre"),
  });
  const code = encodeTopK(rec, pre, { k, activation: relu ? "relu" : "none", kernel: opts.selection });
  if (opts.keep) return { ...code, xc, pre };
  rec.recycle(xc, pre);
  return code;
}

/** Options of {@linkcode saeForward}. */
export interface SaeForwardOptions {
  /** AuxK: this many more slots per row, the top-kAux of ReLU(pre) over the dead latents (default 0: no AuxK). */
  kAux?: number;
  /** f32 [n], 1 where a latent is dead; required with kAux > 0 (see {@linkcode DeadLatents}). */
  deadMask?: Tensor;
  /** Keep the pre-activations [B, n] (after the ReLU) in the result; otherwise AuxK reuses their buffer. */
  keepPre?: boolean;
  /** W_decᵀ [n, d] when the caller has it already; otherwise it is transposed here. */
  atoms?: Tensor;
  /** Called after the main top-k, before AuxK reads `deadMask`: the trainer records its dead-latent update here. */
  onCode?: (code: SparseCode) => void;
  /** The selection kernel (see `encodeTopK`; default "auto"). */
  selection?: "auto" | "insertion" | "topk";
}

/** Everything the forward computed that the loss and the backward need. */
export interface SaeForward {
  /** The input [B, d]. */
  x: Tensor;
  /** x − b_pre [B, d]. */
  xc: Tensor;
  /** Pre-activations after the ReLU [B, n], only with `keepPre`. */
  pre: Tensor | null;
  /** The main code: top-k values [B, k] (descending) and latent ids (u32). */
  code: SparseCode;
  /** The AuxK code [B, kAux], or null without AuxK. */
  auxCode: SparseCode | null;
  /** Main then AuxK slots [B, k + kAux] (the main code itself without AuxK): what the backward walks. */
  slots: SparseCode;
  /** The reconstruction x̂ [B, d]. */
  xHat: Tensor;
  /** The AuxK reconstruction Σ v·W_dec[:, idx] over the AuxK slots (no bias) [B, d], or null. */
  auxRecon: Tensor | null;
  /** W_decᵀ [n, d], as used. */
  atoms: Tensor;
}

/**
 * Records the forward pass on `x` [B, d]. Every tensor of the result is allocated on `rec` (pooled): hand them back
 * with {@linkcode recycleForward} once nothing later reads them.
 *
 * ```ts ignore
 * const fwd = saeForward(rec, sae, x, { kAux: 256, deadMask: dead.mask });
 * const { scalars, dx } = saeLoss(rec, { x, xHat: fwd.xHat, auxRecon: fwd.auxRecon, values: fwd.code.values });
 * saeBackward(rec, sae, fwd, dx!, grads);
 * ```
 */
export function saeForward(rec: Recorder, sae: Sae, x: Tensor, opts: SaeForwardOptions = {}): SaeForward {
  const { d, nLatents: n, relu } = sae.config;
  const { W_dec, b_pre } = sae.params;
  requireDtype("saeForward", x);
  if (x.shape.length !== 2 || x.shape[1] !== d) {
    throw new TypeError(`saeForward: x ${fmtShape(x.shape)} must be [B, ${d}] for an SAE with d = ${d}`);
  }
  const kAux = opts.kAux ?? 0;
  const limit = maxTopK(rec.ctx.limits);
  if (!Number.isInteger(kAux) || kAux < 0 || kAux > n || kAux > limit) {
    throw new RangeError(`saeForward: kAux = ${kAux} must be an integer in [0, ${Math.min(n, limit)}]`);
  }
  if (kAux > 0) {
    if (!opts.deadMask) throw new TypeError("saeForward: kAux > 0 needs a deadMask (f32 [n], 1 = dead)");
    requireDtype("saeForward deadMask", opts.deadMask);
    assertShape(`saeForward: deadMask "${opts.deadMask.label}"`, opts.deadMask.shape, [n]);
  }
  let atoms = opts.atoms;
  if (atoms) assertShape(`saeForward: atoms "${atoms.label}" (W_decᵀ)`, atoms.shape, [n, d]);
  else atoms = transpose(rec, W_dec, 0, 1, { out: rec.alloc([n, d], "f32", "sae.atoms") });

  const kernel = opts.selection;
  const { xc, pre, ...code } = saeEncode(rec, sae, x, { selection: kernel, keep: true });
  opts.onCode?.(code);
  const auxCode = kAux > 0
    ? encodeTopK(rec, pre, { k: kAux, activation: "dead", deadMask: opts.deadMask, kernel })
    : null;
  if (opts.keepPre && relu) clamp(rec, pre, { lo: 0, out: pre });
  if (!opts.keepPre) rec.recycle(pre);
  const slots = auxCode
    ? { values: concat(rec, [code.values, auxCode.values]), indices: concat(rec, [code.indices, auxCode.indices]) }
    : code;
  const xHat = sparseDecode(rec, code, atoms, { bias: b_pre, sorted: relu });
  const auxRecon = auxCode ? sparseDecode(rec, auxCode, atoms, { sorted: true }) : null;
  return { x, xc, pre: opts.keepPre ? pre : null, code, auxCode, slots, xHat, auxRecon, atoms };
}

/** Returns the forward's tensors to the recorder's pool (all but `x`, which the caller owns). */
export function recycleForward(rec: Recorder, fwd: SaeForward, opts: { keepAtoms?: boolean } = {}): void {
  const ts = [fwd.xc, fwd.code.values, fwd.code.indices, fwd.xHat];
  if (fwd.pre) ts.push(fwd.pre);
  if (fwd.auxCode) ts.push(fwd.auxCode.values, fwd.auxCode.indices, fwd.slots.values, fwd.slots.indices);
  if (fwd.auxRecon) ts.push(fwd.auxRecon);
  if (!opts.keepAtoms) ts.push(fwd.atoms);
  rec.recycle(...ts);
}

/**
 * Records the sparse backward from `dx` = dL/dx̂ (and dL/dê with AuxK; see `saeLoss`): writes the gradients given
 * in `grads` (any subset), accumulating unless `accumulate` is false. The W_dec gradient is the raw one; the
 * decoder constraint ({@linkcode constrainDecoder}) projects it afterwards.
 */
export function saeBackward(
  rec: Recorder,
  sae: Sae,
  fwd: SaeForward,
  dx: Tensor,
  grads: Partial<SaeParams>,
  opts: AccumulateOptions = {},
): void {
  sparseBackward(
    rec,
    {
      slots: fwd.slots,
      k: sae.config.k,
      dx,
      atoms: fwd.atoms,
      xc: fwd.xc,
      wEnc: sae.params.W_enc,
      relu: sae.config.relu,
    },
    { dW_enc: grads.W_enc, db_enc: grads.b_enc, dW_dec: grads.W_dec, db_pre: grads.b_pre, ...opts },
  );
}

/**
 * The decoder constraint: every column of W_dec [d, n] to unit norm, and, when its gradient is given, the
 * gradient's component along each (renormalised) column removed (SDLens' order: after the backward, before the
 * optimiser step).
 */
export function constrainDecoder(rec: Recorder, W_dec: Tensor, grad?: Tensor): void {
  requireDtype("constrainDecoder", W_dec);
  if (W_dec.shape.length !== 2) throw new TypeError(`constrainDecoder: W_dec ${fmtShape(W_dec.shape)} must be [d, n]`);
  const [d, n] = W_dec.shape;
  if (3 * d > 60_000) throw new RangeError(`constrainDecoder: d = ${d} exceeds 20000`);
  if (grad) {
    requireDtype("constrainDecoder", grad);
    assertShape(`constrainDecoder: gradient "${grad.label}" against W_dec`, grad.shape, W_dec.shape);
  }
  const grid = grid1dFor(rec, n, 64);
  const params = { d, n, row: grid[0] };
  if (grad) rec.dispatch(NORM.unit_project, { write: { w: W_dec, grad }, params, grid });
  else rec.dispatch(NORM.unit, { write: { w: W_dec }, params, grid });
}

/** Options of {@linkcode DeadLatents}. */
export interface DeadLatentsOptions {
  /** A latent is dead once it has not fired for this many steps (SDLens: 10M tokens / 4096 = 2441). */
  deadSteps: number;
  /** A latent fires when its value in some row's top-k exceeds this (default 1e-3). */
  threshold?: number;
}

/**
 * The per-latent "steps since last fired" counter of AuxK (OpenAI / SDLens `stats_last_nonzero`), on the GPU:
 * `update` marks the latents fired in a batch, then counter = (fired ? 0 : counter) + 1 and mask = counter >
 * deadSteps.
 */
export class DeadLatents {
  /** u32 [n]: steps since each latent last fired (plus one, as the reference counts). */
  readonly counter: Tensor;
  /** f32 [n]: 1 where the latent is dead, as of the last update. */
  readonly mask: Tensor;
  readonly deadSteps: number;
  readonly threshold: number;
  #fired: Tensor;

  constructor(readonly ctx: GpuContext, readonly n: number, opts: DeadLatentsOptions) {
    if (!Number.isInteger(opts.deadSteps) || opts.deadSteps < 0 || opts.deadSteps > 0xfffffff0) {
      throw new RangeError(`DeadLatents: deadSteps must be a non-negative integer, got ${opts.deadSteps}`);
    }
    this.deadSteps = opts.deadSteps;
    this.threshold = opts.threshold ?? 1e-3;
    this.counter = ctx.persist(ctx.tensor([n], "u32", "stats_last_nonzero"));
    this.mask = ctx.persist(ctx.tensor([n], "f32", "dead_mask"));
    this.#fired = ctx.persist(ctx.tensor([n], "u32", "fired"));
  }

  /** Records the update from a batch's main top-k code. */
  update(rec: Recorder, code: SparseCode): void {
    const [B, k] = code.values.shape;
    const base = { rows: B, k, n: this.n, threshold: this.threshold, dead_steps: this.deadSteps };
    let grid = grid1dFor(rec, B * k, 256);
    rec.dispatch(DEAD.mark, {
      read: { values: code.values, indices: code.indices },
      write: { fired: this.#fired },
      params: { ...base, row: grid[0] },
      grid,
    });
    grid = grid1dFor(rec, this.n, 256);
    rec.dispatch(DEAD.update, {
      write: { fired: this.#fired, counter: this.counter, dead_out: this.mask },
      params: { ...base, row: grid[0] },
      grid,
    });
  }

  /** Frees the buffers. */
  release(): void {
    this.ctx.release(this.counter, this.mask, this.#fired);
  }
}
