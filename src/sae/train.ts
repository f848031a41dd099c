/**
 * Training a TopK SAE on the GPU from a stream of shuffled activation batches: forward, loss, sparse backward,
 * decoder constraint and Adam recorded as one submit per step, with metrics read back every N steps. Seeded: the
 * same config, seed and source give bit-identical parameters on a given device (every kernel sums in a fixed order).
 * @module
 */
import type { GpuContext } from "../gpu/context.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { fmtShape, numel, type Tensor } from "../gpu/tensor.ts";
import { transpose } from "../ops/permute.ts";
import { Adam, linearWarmup, type LrSchedule } from "../optim/adam.ts";
import { rng } from "../ref/random.ts";
import { columnMean, geometricMedian, initSaeWeights, type WeightInit } from "./init.ts";
import { type AuxLoss, lossScalars, type RecLoss, saeLoss } from "./loss.ts";
import {
  constrainDecoder,
  DeadLatents,
  recycleForward,
  Sae,
  SAE_PARAM_NAMES,
  saeBackward,
  saeConfig,
  saeForward,
  type SaeParamName,
  type SaeParams,
  saeParamShapes,
} from "./model.ts";
import type { ActivationSource } from "./sources.ts";

/** Everything a training run is configured by; every field but d and k has the default SDLens used. */
export interface SaeTrainConfig {
  /** Width of the activations. */
  d: number;
  /** Number of latents (default 4·d). */
  nLatents?: number;
  /** Latents kept per row (SDLens 10 or 20, Revelio 32). */
  k: number;
  /** ReLU before TopK (default true; Revelio's k-SAE: false). */
  relu?: boolean;
  /** Weight init (default "tied"; Revelio "kaiming"). */
  init?: WeightInit;
  /** b_pre from the first `initRows` rows of the shuffled data: geometric median (default), mean, or zero. */
  bPreInit?: "geometric-median" | "mean" | "zero";
  /** Rows for the b_pre init (default 32768, or all rows if fewer; Revelio: one batch, 8192). */
  initRows?: number;
  /** Rows per step (default 4096). */
  batchSize?: number;
  /** Steps to run (default: `epochs` passes over the data, dropping each pass's last partial batch). */
  steps?: number;
  /** Passes over the data when `steps` is absent (default 1). */
  epochs?: number;
  /** Adam's learning rate, or a schedule of the step (default 1e-4; Revelio 4e-4). */
  lr?: number | LrSchedule;
  /** Linear warm-up of the learning rate over this many steps (default 0; Revelio 500). */
  warmupSteps?: number;
  /** Adam's betas (default [0.9, 0.999]). */
  betas?: [number, number];
  /** Adam's eps (default 6.25e-10). */
  eps?: number;
  /** Reconstruction loss form (default "scaled"; Revelio "normalized"; the fixture's "sum"). */
  recLoss?: RecLoss;
  /** Batches whose mean variance measures the 1/Var(x) of the "scaled" loss and metric (default 10). */
  scaleBatches?: number;
  /** AuxK slots per row (default 256; 0 turns AuxK off). */
  kAux?: number;
  /** AuxK loss form (default "normalized"). */
  auxLoss?: AuxLoss;
  /** Weight of the AuxK loss (default 1/32). */
  auxAlpha?: number;
  /** A latent is dead after this many steps without firing (default ⌊10M tokens / batchSize⌋: 2441 at 4096). */
  deadSteps?: number;
  /** Seed of the weight init and the shuffling (default 0). */
  seed?: number;
}

/** SDLens' dead-latent horizon: a latent that has not fired for this many tokens is dead (AuxK trains it). */
export const DEAD_TOKENS = 10_000_000;

/** Steps between readbacks of the dead counters while AuxK may be needed (each is a sync point). */
const PROBE_EVERY = 50;

/** A config with every default filled in. */
export type ResolvedTrainConfig = Required<Omit<SaeTrainConfig, "steps">> & { steps: number | null };

/**
 * Revelio's k-SAE (`train_ksae.py`) as a partial config: k 32, no ReLU, no AuxK, untied kaiming init, mean b_dec,
 * normalised MSE, Adam 4e-4 with 500 warm-up steps, batch 8192, 10,240 steps (83,886,080 tokens: its data loader
 * cycles a small per-image dataset many times). Add d and nLatents (64·d).
 */
export const REVELIO_KSAE: Omit<SaeTrainConfig, "d"> = {
  k: 32,
  relu: false,
  init: "kaiming",
  bPreInit: "mean",
  initRows: 8192,
  batchSize: 8192,
  steps: 10_240,
  lr: 4e-4,
  warmupSteps: 500,
  recLoss: "normalized",
  kAux: 0,
  auxLoss: "none",
};

/** Fills in the defaults and validates. */
export function resolveTrainConfig(c: SaeTrainConfig): ResolvedTrainConfig {
  const r: ResolvedTrainConfig = {
    d: c.d,
    nLatents: c.nLatents ?? 4 * c.d,
    k: c.k,
    relu: c.relu ?? true,
    init: c.init ?? "tied",
    bPreInit: c.bPreInit ?? "geometric-median",
    initRows: c.initRows ?? 32768,
    batchSize: c.batchSize ?? 4096,
    steps: c.steps ?? null,
    epochs: c.epochs ?? 1,
    lr: c.lr ?? 1e-4,
    warmupSteps: c.warmupSteps ?? 0,
    betas: c.betas ?? [0.9, 0.999],
    eps: c.eps ?? 6.25e-10,
    recLoss: c.recLoss ?? "scaled",
    scaleBatches: c.scaleBatches ?? 10,
    kAux: c.kAux ?? 256,
    auxLoss: c.auxLoss ?? (c.kAux === 0 ? "none" : "normalized"),
    auxAlpha: c.auxAlpha ?? 1 / 32,
    deadSteps: c.deadSteps ?? Math.floor(DEAD_TOKENS / (c.batchSize ?? 4096)),
    seed: c.seed ?? 0,
  };
  saeConfig({ d: r.d, nLatents: r.nLatents, k: r.k, relu: r.relu });
  const ints: [string, number, number][] = [
    ["batchSize", r.batchSize, 1],
    ["epochs", r.epochs, 1],
    ["initRows", r.initRows, 1],
    ["warmupSteps", r.warmupSteps, 0],
    ["scaleBatches", r.scaleBatches, 1],
    ["kAux", r.kAux, 0],
    ["deadSteps", r.deadSteps, 0],
    ["seed", r.seed, 0],
  ];
  if (r.steps !== null) ints.push(["steps", r.steps, 0]);
  for (const [name, v, lo] of ints) {
    if (!Number.isInteger(v) || v < lo) throw new RangeError(`trainSAE: ${name} must be an integer ≥ ${lo}, got ${v}`);
  }
  if (r.kAux > r.nLatents) throw new RangeError(`trainSAE: kAux = ${r.kAux} exceeds nLatents = ${r.nLatents}`);
  if (r.kAux === 0 && r.auxLoss !== "none") r.auxLoss = "none";
  return r;
}

/** What the trainer logs every `metricsEvery` steps (the batch of that step, plus the dead-latent counts). */
export interface SaeMetrics {
  /** Steps done. */
  step: number;
  /** Rows seen. */
  tokens: number;
  /** The training loss of the batch: recLoss + auxAlpha · auxLoss. */
  loss: number;
  recLoss: number;
  auxLoss: number;
  /** mean((x − x̂)²) · 1/Var(x), Var measured once at the start ("Scaled MSE" of SDLens' tables). */
  scaledMse: number;
  /** Σ (x − x̂)² / rows (the fixture's unscaled form). */
  mse: number;
  /** Σ (x − x̂)² / Σ (x − mean x)² over the batch. */
  fvu: number;
  /** mean over features of 1 − Var(x − x̂) / Var(x). */
  explainedVariance: number;
  /** Nonzero latents per row. */
  l0: number;
  /** Fraction of latents dead for AuxK (not fired in the last `deadSteps` steps). */
  deadFraction: number;
  /** Fraction of latents that did not fire in the last `metricsEvery` steps (0 before that many steps). */
  quietFraction: number;
  /** Whether this step ran AuxK (it is skipped, exactly, while no latent can be dead yet). */
  auxActive: boolean;
  /** Wall-clock seconds since the training loop started. */
  seconds: number;
}

/** What a checkpoint callback gets. */
export interface SaeCheckpoint {
  sae: Sae;
  step: number;
  config: ResolvedTrainConfig;
  /** 1/Var(x) of the "scaled" loss. */
  mseScale: number;
  /** Reads back the whole training state (to resume from exactly here); call it before the callback returns. */
  state(): Promise<TrainState>;
}

/** Where a {@linkcode RowOrder} stands: the current pass's permutation, the position in it, the shuffle's rng. */
export interface RowOrderState {
  perm: Uint32Array;
  at: number;
  /** The mulberry32 state (`Rng.state()`). */
  rand: number;
}

/** What {@linkcode SaeTrainer} holds besides its config, on the host. */
export interface TrainerState {
  /** 1/Var(x) of the "scaled" loss. */
  mseScale: number;
  params: Record<SaeParamName, Float32Array>;
  /** Adam's step count and moments under {@linkcode Adam.state}'s names (`W_enc.exp_avg`, `W_enc.exp_avg_sq`, …). */
  adam: { step: number; moments: Record<string, Float32Array> };
  /** `DeadLatents.counter` (null when AuxK is off). */
  deadCounter: Uint32Array | null;
}

/**
 * Everything a run needs to continue exactly where it stopped: given as `resume`, {@linkcode trainSAE} reproduces
 * the batches, AuxK masks and updates an uninterrupted run would have made.
 */
export interface TrainState extends TrainerState {
  /** Steps done. */
  step: number;
  order: RowOrderState;
}

/** Options of {@linkcode trainSAE}. */
export interface TrainOptions {
  /** Called with the metrics every `metricsEvery` steps and after the last step. */
  onMetrics?: (m: SaeMetrics) => void;
  /** Steps between metrics (default 100). */
  metricsEvery?: number;
  /** Steps between checkpoints (default 0: none). */
  checkpointEvery?: number;
  /** Called every `checkpointEvery` steps and after the last step when checkpointing (e.g. io's saveSaeFile). */
  onCheckpoint?: (c: SaeCheckpoint) => void | Promise<void>;
  /** Stops after the current step when aborted. */
  signal?: AbortSignal;
  /** Called after each step is submitted (progress bars). */
  onStep?: (step: number) => void;
  /**
   * Continue a run from a checkpoint's state instead of starting one: no init, no 1/Var(x) measurement; the
   * config must be the one the state was made with (shapes are checked; `steps` may grow).
   */
  resume?: TrainState;
}

/** The outcome of {@linkcode trainSAE}. */
export interface TrainResult {
  /** The trained SAE (the caller releases it). */
  sae: Sae;
  config: ResolvedTrainConfig;
  steps: number;
  tokens: number;
  seconds: number;
  /** 1/Var(x) used by the "scaled" loss and metric. */
  mseScale: number;
  /** Every metrics record, in order. */
  history: SaeMetrics[];
}

/** Seeded epoch-wise shuffling of row ids (Fisher–Yates with mulberry32). */
export class RowOrder {
  #perm: Uint32Array;
  #at: number;
  #rand: ReturnType<typeof rng>;

  /** A fresh order from `seed`, or one continuing from `state` (a {@linkcode RowOrder.state} of `rows` rows). */
  constructor(readonly rows: number, seed: number, state?: RowOrderState) {
    if (state && state.perm.length !== rows) {
      throw new RangeError(`RowOrder: the state orders ${state.perm.length} rows, not ${rows}`);
    }
    if (state && !(Number.isInteger(state.at) && state.at >= 0 && state.at <= rows)) {
      throw new RangeError(`RowOrder: the state's position ${state.at} is not in [0, ${rows}]`);
    }
    this.#rand = rng(state ? state.rand : seed);
    this.#perm = state ? state.perm.slice() : Uint32Array.from({ length: rows }, (_, i) => i);
    this.#at = state ? state.at : rows;
  }

  /** A copy of where the order stands; `new RowOrder(rows, seed, state)` continues from it. */
  state(): RowOrderState {
    return { perm: this.#perm.slice(), at: this.#at, rand: this.#rand.state() };
  }

  /** The next `n` ids (n ≤ rows); a new pass starts, reshuffled, when the current one cannot fill a batch. */
  next(n: number): Uint32Array {
    if (this.#at + n > this.rows) {
      const p = this.#perm;
      for (let i = p.length - 1; i > 0; i--) {
        const j = Math.floor(this.#rand.uniform() * (i + 1));
        [p[i], p[j]] = [p[j], p[i]];
      }
      this.#at = 0;
    }
    const out = this.#perm.slice(this.#at, this.#at + n);
    this.#at += n;
    return out;
  }
}

/**
 * One training step's state: the SAE, its gradients, Adam, the dead-latent counter. `recordStep` records a whole
 * step (the benchmark drives it directly; {@linkcode trainSAE} wraps it with data, init and logging).
 */
export class SaeTrainer {
  readonly grads: SaeParams;
  readonly optimizer: Adam;
  readonly dead: DeadLatents | null;

  constructor(
    readonly ctx: GpuContext,
    readonly sae: Sae,
    readonly config: ResolvedTrainConfig,
    public mseScale = 1,
  ) {
    this.grads = sae.zerosLike();
    const c = config;
    const lr = typeof c.lr === "number" && c.warmupSteps > 0 ? linearWarmup(c.lr, c.warmupSteps) : c.lr;
    this.optimizer = new Adam(
      ctx,
      SAE_PARAM_NAMES.map((name) => ({ name, param: sae.params[name], grad: this.grads[name] })),
      { lr, betas: c.betas, eps: c.eps },
    );
    this.dead = c.kAux > 0 ? new DeadLatents(ctx, c.nLatents, { deadSteps: c.deadSteps }) : null;
  }

  /**
   * Records one step on `x` [B, d]: forward (AuxK only when `aux`), loss, sparse backward, decoder constraint, Adam.
   * Writes the loss scalars into `scalars` (f32 [16]).
   */
  recordStep(rec: Recorder, x: Tensor, scalars: Tensor, opts: { aux?: boolean } = {}): void {
    const c = this.config;
    const { d, nLatents: n } = this.sae.config;
    const atoms = transpose(rec, this.sae.params.W_dec, 0, 1, { out: rec.alloc([n, d], "f32", "sae.atoms") });
    const aux = (opts.aux ?? true) && this.dead !== null;
    const fwd = saeForward(rec, this.sae, x, {
      atoms,
      kAux: aux ? c.kAux : 0,
      deadMask: this.dead?.mask,
      onCode: (code) => this.dead?.update(rec, code),
    });
    const { dx } = saeLoss(rec, { x, xHat: fwd.xHat, auxRecon: fwd.auxRecon, values: fwd.code.values }, {
      rec: c.recLoss,
      aux: c.auxLoss,
      auxAlpha: c.auxAlpha,
      mseScale: this.mseScale,
      scalars,
    });
    saeBackward(rec, this.sae, fwd, dx!, this.grads, { accumulate: false });
    rec.recycle(dx!);
    recycleForward(rec, fwd);
    constrainDecoder(rec, this.sae.params.W_dec, this.grads.W_dec);
    this.optimizer.step(rec);
  }

  /** Reads the parameters, Adam's moments and step count, and the dead-latent counter back to the host. */
  async exportState(): Promise<TrainerState> {
    const params = {} as Record<SaeParamName, Float32Array>;
    for (const name of SAE_PARAM_NAMES) params[name] = await this.ctx.readF32(this.sae.params[name]);
    const moments: Record<string, Float32Array> = {};
    for (const [name, t] of this.optimizer.state()) if (name !== "step") moments[name] = await this.ctx.readF32(t);
    const deadCounter = this.dead ? new Uint32Array(await this.ctx.read(this.dead.counter) as Uint32Array) : null;
    return { mseScale: this.mseScale, params, adam: { step: this.optimizer.steps, moments }, deadCounter };
  }

  /** Restores a state from {@linkcode exportState} (of a trainer with the same config); shapes are checked. */
  async importState(s: TrainerState): Promise<void> {
    const shapes = saeParamShapes(this.sae.config);
    const wrong: string[] = [];
    for (const name of SAE_PARAM_NAMES) {
      const want = numel(shapes[name]);
      if (s.params[name]?.length !== want) {
        wrong.push(`${name} has ${s.params[name]?.length ?? "no"} values, not ${fmtShape(shapes[name])}`);
      }
    }
    if ((s.deadCounter === null) !== (this.dead === null)) {
      wrong.push(this.dead ? "it has no dead-latent counter (AuxK was off)" : "it has a dead-latent counter");
    } else if (this.dead && s.deadCounter!.length !== this.dead.n) {
      wrong.push(`its dead-latent counter has ${s.deadCounter!.length} entries, not ${this.dead.n}`);
    }
    if (wrong.length) throw new TypeError(`SaeTrainer.importState: the state does not fit: ${wrong.join("; ")}`);
    for (const name of SAE_PARAM_NAMES) this.ctx.write(this.sae.params[name], s.params[name]);
    if (this.dead) this.ctx.write(this.dead.counter, s.deadCounter!);
    const given = new Map<string, Tensor>();
    try {
      for (const [name, v] of Object.entries(s.adam.moments)) {
        // moments arrive flat: shaped like their parameter when the sizes agree, else flat for Adam's error
        const shape = shapes[name.replace(/\.exp_avg(_sq)?$/, "") as SaeParamName];
        const fits = shape !== undefined && numel(shape) === v.length;
        given.set(name, this.ctx.upload(v, fits ? shape : [v.length], "f32", name));
      }
      given.set("step", this.ctx.upload([s.adam.step], [], "f32", "step"));
      await this.optimizer.loadState(given);
    } finally {
      for (const t of given.values()) this.ctx.release(t);
    }
    this.mseScale = s.mseScale;
  }

  /** Frees the gradients, the optimiser state and the counter (not the SAE). */
  release(): void {
    for (const name of SAE_PARAM_NAMES) this.ctx.release(this.grads[name]);
    this.optimizer.release();
    this.dead?.release();
  }
}

/** A batch as a tensor on `rec`: host floats are uploaded into a tensor released after the submit. */
async function batchTensor(rec: Recorder, source: ActivationSource, ids: Uint32Array): Promise<[Tensor, boolean]> {
  const got = await source.batch(ids, rec);
  const shape = [ids.length, source.d];
  if (got instanceof Float32Array) {
    if (got.length !== ids.length * source.d) {
      throw new RangeError(`ActivationSource: batch of ${ids.length} rows gave ${got.length} values, not ×${source.d}`);
    }
    const t = rec.ctx.upload(got, shape, "f32", "sae.batch");
    rec.releaseAfterSubmit(t);
    return [t, false];
  }
  if (got.shape.length !== 2 || got.shape[0] !== shape[0] || got.shape[1] !== shape[1] || got.dtype !== "f32") {
    throw new TypeError(
      `ActivationSource: batch is ${fmtShape(got.shape)} ${got.dtype}, expected f32 ${fmtShape(shape)}`,
    );
  }
  return [got, true];
}

/**
 * Trains a TopK SAE on `source` (see {@linkcode SaeTrainConfig} for every knob and its SDLens default):
 * 1. weights from `seed` (tied or kaiming init), b_pre = geometric median (or mean) of the first `initRows` rows;
 * 2. 1/Var(x) from the first `scaleBatches` batches;
 * 3. per step: a shuffled batch, forward, loss, sparse backward, decoder renormalisation and gradient projection,
 *    Adam; AuxK over the latents dead for `deadSteps` steps. Metrics every `metricsEvery` steps.
 *
 * With `resume` (a checkpoint's {@linkcode SaeCheckpoint.state}), steps 1 and 2 are replaced by the saved state and
 * the run continues as the uninterrupted one would have, bit for bit.
 *
 * ```ts ignore
 * const { sae, history } = await trainSAE(ctx, tensorSource(acts), { d: 1280, k: 10, steps: 2000 }, {
 *   onMetrics: (m) => console.log(m.step, m.scaledMse, m.explainedVariance),
 * });
 * ```
 */
export async function trainSAE(
  ctx: GpuContext,
  source: ActivationSource,
  config: SaeTrainConfig,
  opts: TrainOptions = {},
): Promise<TrainResult> {
  const c = resolveTrainConfig(config);
  if (source.d !== c.d) throw new TypeError(`trainSAE: the source's rows have d = ${source.d}, the config ${c.d}`);
  const B = c.batchSize;
  if (source.rows < B) throw new RangeError(`trainSAE: ${source.rows} rows cannot fill a batch of ${B}`);
  const metricsEvery = opts.metricsEvery ?? 100;
  const checkpointEvery = opts.checkpointEvery ?? 0;
  for (const [name, v] of [["metricsEvery", metricsEvery], ["checkpointEvery", checkpointEvery]] as const) {
    if (!Number.isInteger(v) || v < 0) throw new RangeError(`trainSAE: ${name} must be an integer ≥ 0, got ${v}`);
  }
  const steps = c.steps ?? c.epochs * Math.floor(source.rows / B);
  const resume = opts.resume;
  if (resume) {
    if (resume.order.perm.length !== source.rows) {
      throw new RangeError(
        `trainSAE: the state to resume was made over ${resume.order.perm.length} rows; the source has ${source.rows}`,
      );
    }
    if (!(Number.isInteger(resume.step) && resume.step >= 0 && resume.step <= steps)) {
      throw new RangeError(`trainSAE: the state to resume is at step ${resume.step}, past the ${steps} steps asked`);
    }
  }
  const order = new RowOrder(source.rows, c.seed, resume?.order);
  const sae = new Sae(ctx, { d: c.d, nLatents: c.nLatents, k: c.k, relu: c.relu });
  const scalars = ctx.persist(ctx.tensor([16], "f32", "sae.scalars"));
  let trainer: SaeTrainer;
  try {
    trainer = new SaeTrainer(ctx, sae, c, resume ? resume.mseScale : await initialize(sae, source, c, scalars));
  } catch (e) {
    sae.release();
    ctx.release(scalars);
    throw e;
  }
  if (resume) {
    try {
      await trainer.importState(resume);
    } catch (e) {
      trainer.release();
      sae.release();
      ctx.release(scalars);
      throw e;
    }
  }

  // the loop
  const history: SaeMetrics[] = [];
  // AuxK is exact to skip while no counter can exceed deadSteps: counters grow by at most 1 per step from the
  // last value read back.
  let step = resume?.step ?? 0;
  let knownMax = resume?.deadCounter ? maxOf(resume.deadCounter) : 0, knownAt = step;
  const mseScale = trainer.mseScale;
  const t0 = performance.now();
  let inFlight: Promise<unknown> = Promise.resolve();
  try {
    while (step < steps && !opts.signal?.aborted) {
      let aux = trainer.dead !== null && knownMax + (step + 1 - knownAt) > c.deadSteps;
      if (aux && step - knownAt >= PROBE_EVERY) { // a readback syncs: not every step
        await inFlight;
        knownMax = maxOf(await ctx.read(trainer.dead!.counter) as Uint32Array);
        knownAt = step;
        aux = knownMax + 1 > c.deadSteps;
      }
      const rec = ctx.recorder("sae.step");
      const [x, pooled] = await batchTensor(rec, source, order.next(B));
      trainer.recordStep(rec, x, scalars, { aux });
      if (pooled) rec.recycle(x);
      await rec.submit();
      step++;
      // keep at most one step queued behind the one running, so memory stays bounded
      const done = ctx.device.queue.onSubmittedWorkDone();
      await inFlight;
      inFlight = done;
      opts.onStep?.(step);
      const last = step === steps || opts.signal?.aborted;
      if ((metricsEvery > 0 && step % metricsEvery === 0) || (last && opts.onMetrics)) {
        const s = lossScalars(await ctx.readF32(scalars));
        const counter = trainer.dead ? await ctx.read(trainer.dead.counter) as Uint32Array : null;
        if (counter) [knownMax, knownAt] = [maxOf(counter), step];
        const window = metricsEvery || step;
        const m: SaeMetrics = {
          step,
          tokens: step * B,
          loss: s.loss,
          recLoss: s.recLoss,
          auxLoss: s.auxLoss,
          scaledMse: s.mseElem * mseScale,
          mse: s.mse,
          fvu: s.fvu,
          explainedVariance: s.explainedVariance,
          l0: s.l0,
          deadFraction: counter ? fraction(counter, (v) => v > c.deadSteps) : 0,
          quietFraction: counter && step >= window ? fraction(counter, (v) => v > window) : 0,
          auxActive: aux,
          seconds: (performance.now() - t0) / 1000,
        };
        history.push(m);
        opts.onMetrics?.(m);
      }
      if (checkpointEvery > 0 && opts.onCheckpoint && (step % checkpointEvery === 0 || last)) {
        const state = async (): Promise<TrainState> => {
          await inFlight;
          const s = { ...await trainer.exportState(), step, order: order.state() };
          // the counter is read anyway: a resumed run starts from this reading too, so both decide AuxK alike
          if (s.deadCounter) [knownMax, knownAt] = [maxOf(s.deadCounter), step];
          return s;
        };
        await opts.onCheckpoint({ sae, step, config: c, mseScale, state });
      }
    }
    await ctx.sync();
  } finally {
    trainer.release();
    ctx.release(scalars);
  }
  return { sae, config: c, steps: step, tokens: step * B, seconds: (performance.now() - t0) / 1000, mseScale, history };
}

/** A new run's start: the weight init, b_pre from the first rows, and the 1/Var(x) of the scaled loss (returned). */
async function initialize(
  sae: Sae,
  source: ActivationSource,
  c: ResolvedTrainConfig,
  scalars: Tensor,
): Promise<number> {
  const ctx = sae.ctx, B = c.batchSize;
  let rec = ctx.recorder("sae.init");
  initSaeWeights(rec, sae, { scheme: c.init, seed: c.seed });
  if (c.bPreInit !== "zero") {
    const initOrder = new RowOrder(source.rows, (c.seed ^ 0x5bd1e995) >>> 0);
    const m = Math.min(c.initRows, source.rows);
    const points = ctx.tensor([m, c.d], "f32", "sae.init.points");
    for (let at = 0; at < m; at += B) {
      const len = Math.min(B, m - at);
      const ids = initOrder.next(len);
      const [t, pooled] = await batchTensor(rec, source, ids);
      rec.copy(t, { ...points, offset: at * c.d * 4 }, len * c.d * 4);
      if (pooled) rec.recycle(t);
    }
    if (c.bPreInit === "mean") columnMean(rec, points, { out: sae.params.b_pre });
    else geometricMedian(rec, points, { out: sae.params.b_pre });
    rec.releaseAfterSubmit(points);
  } else rec.zero(sae.params.b_pre);
  await rec.submit();

  // 1/Var(x), on the first batches of the training order (as SDLens measures it)
  const scaleOrder = new RowOrder(source.rows, c.seed);
  let variance = 0;
  for (let b = 0; b < c.scaleBatches; b++) {
    rec = ctx.recorder("sae.scale");
    const [x, pooled] = await batchTensor(rec, source, scaleOrder.next(B));
    saeLoss(rec, { x, xHat: x }, { grad: false, scalars });
    if (pooled) rec.recycle(x);
    await rec.submit();
    variance += lossScalars(await ctx.readF32(scalars)).varX / c.scaleBatches;
  }
  return variance > 0 ? 1 / variance : 1;
}

function maxOf(a: Uint32Array): number {
  let m = 0;
  for (const v of a) if (v > m) m = v;
  return m;
}

function fraction(a: Uint32Array, pred: (v: number) => boolean): number {
  let n = 0;
  for (const v of a) if (pred(v)) n++;
  return n / a.length;
}
