/**
 * What the noise schedulers share: the training noise schedule (β → ᾱ, rounded the way diffusers' float32 torch code
 * rounds it), NumPy's rounding, spacing and interpolation rules (diffusers builds its timesteps with them), the
 * x̂₀/ε̂ coefficients of each prediction type, and the base class with the step bookkeeping and GPU-state ownership.
 *
 * Schedulers work in step indices: `step(rec, modelOutput, i, sample)` is diffusers' `step(model_output,
 * timesteps[i], sample)`. All latent math is one `lincomb` dispatch (or two) whose coefficients are computed here in
 * float64; the latents never come to the CPU.
 * @module
 */
import type { GpuContext } from "../gpu/context.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { assertShape, byteLength, fmtShape, type Tensor } from "../gpu/tensor.ts";
import { lincomb } from "../ops/lincomb.ts";
import type { CommonConfig, PredictionType } from "./config.ts";

const f32 = Math.fround;

/** `torch.linspace(start, end, n, dtype=torch.float32)` on the CPU, bit for bit (it fills from both ends). */
export function torchLinspaceF32(start: number, end: number, n: number): Float64Array {
  const out = new Float64Array(n);
  if (n === 1) out[0] = f32(start);
  if (n <= 1) return out;
  const s = f32(start), e = f32(end), step = f32(f32(e - s) / (n - 1)), half = Math.floor(n / 2);
  for (let i = 0; i < n; i++) out[i] = i < half ? f32(s + f32(step * i)) : f32(e - f32(step * (n - 1 - i)));
  return out;
}

/**
 * ᾱₜ = Πₛ≤ₜ (1 − βₛ) as diffusers computes it: float32 βs and αs, a cumulative product accumulated in float64 and
 * stored as float32 (torch's CPU `cumprod`). Returned as float64 holding float32 values.
 */
export function alphasCumprodOf(c: CommonConfig): Float64Array {
  const N = c.num_train_timesteps;
  let betas: Float64Array;
  if (c.trained_betas) betas = Float64Array.from(c.trained_betas, f32);
  else if (c.beta_schedule === "linear") betas = torchLinspaceF32(c.beta_start, c.beta_end, N);
  else if (c.beta_schedule === "scaled_linear") {
    betas = torchLinspaceF32(Math.sqrt(c.beta_start), Math.sqrt(c.beta_end), N).map((b) => f32(b * b));
  } else {
    // Glide's cosine schedule (betas_for_alpha_bar), computed in float64 then stored as float32.
    const abar = (t: number) => Math.cos((t + 0.008) / 1.008 * Math.PI / 2) ** 2;
    betas = new Float64Array(N).map((_, i) => f32(Math.min(1 - abar((i + 1) / N) / abar(i / N), 0.999)));
  }
  const out = new Float64Array(N);
  let acc = 1;
  for (let i = 0; i < N; i++) out[i] = f32(acc *= f32(1 - betas[i]));
  return out;
}

/** Training noise levels σₜ = √((1 − ᾱₜ)/ᾱₜ) as float32 (the Euler/DPM "sigmas" before interpolation). */
export function trainSigmas(alphasCumprod: Float64Array): Float64Array {
  return alphasCumprod.map((a) => f32(Math.sqrt(f32((1 - a) / a))));
}

/** NumPy's `round`: halves go to the even neighbour. */
export function npRound(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 ? 2 * Math.round(x / 2) : r;
}

/** `np.arange(start, stop, step)` for floats (length ⌈(stop − start)/step⌉, as NumPy counts it). */
export function npArange(start: number, stop: number, step: number): Float64Array {
  const n = Math.max(0, Math.ceil((stop - start) / step));
  const delta = start + step - start;
  return new Float64Array(n).map((_, i) => start + i * delta);
}

/** `np.linspace(0, stop, n)`. */
export function npLinspace0(stop: number, n: number): Float64Array {
  const out = new Float64Array(n).map((_, i) => i * (stop / (n - 1)));
  if (n > 1) out[n - 1] = stop;
  else if (n === 1) out[0] = 0;
  return out;
}

/** `np.interp(x, arange(len(fp)), fp)`: piecewise-linear, clamped at both ends. */
export function npInterp(x: number, fp: Float64Array): number {
  if (!(x > 0)) return fp[0];
  if (x >= fp.length - 1) return fp[fp.length - 1];
  const j = Math.floor(x);
  if (j === x) return fp[j];
  return (fp[j + 1] - fp[j]) * (x - j) + fp[j];
}

/**
 * The descending inference timesteps diffusers' DDIM, PNDM and Euler schedulers build for `n` steps:
 * "leading" (k·⌊N/n⌋ + steps_offset), "trailing" (round(N − k·N/n) − 1) or "linspace" (n values over [0, N−1],
 * rounded half-to-even unless `roundLinspace` is false — Euler keeps them fractional, as float32).
 */
export function spacedTimesteps(c: CommonConfig, n: number, roundLinspace = true): Float64Array {
  const N = c.num_train_timesteps;
  let ts: Float64Array;
  if (c.timestep_spacing === "leading") {
    const ratio = Math.floor(N / n);
    ts = new Float64Array(n).map((_, k) => (n - 1 - k) * ratio + c.steps_offset);
  } else if (c.timestep_spacing === "trailing") {
    ts = npArange(N, 0, -N / n).map((t) => npRound(t) - 1);
  } else {
    ts = npLinspace0(N - 1, n).map((t) => (roundLinspace ? npRound(t) : f32(t))).reverse();
  }
  return ts;
}

/** A combination `cₓ·sample + cₘ·modelOutput`, as its two coefficients. */
export type Coefs = readonly [sample: number, model: number];

/**
 * The model's x̂₀ and ε̂ as combinations of the sample x and the model output m, at a noise level with
 * x = α·x₀ + σ·ε (α² + σ² = 1): for ε-prediction x̂₀ = (x − σ·m)/α, ε̂ = m; for v-prediction x̂₀ = α·x − σ·m,
 * ε̂ = σ·x + α·m.
 */
export function predictions(type: PredictionType, alpha: number, sigma: number): { x0: Coefs; eps: Coefs } {
  return type === "epsilon"
    ? { x0: [1 / alpha, -sigma / alpha], eps: [0, 1] }
    : { x0: [alpha, -sigma], eps: [sigma, alpha] };
}

/** The noise schedulers' common surface (diffusers semantics, step indices instead of timestep values). */
export abstract class NoiseScheduler<C extends CommonConfig = CommonConfig> {
  /** diffusers' class name (`_class_name` in `scheduler_config.json`). */
  abstract readonly className: string;
  /** ᾱₜ for t = 0 … N−1 (float32 values, as diffusers holds them). */
  readonly alphasCumprod: Float64Array;
  /** Timestep values of the current schedule, to feed the U-Net (Euler's are fractional). Empty before `setTimesteps`. */
  timesteps: Float64Array = new Float64Array(0);
  /** The `n` given to `setTimesteps` (PNDM's schedule has n + 1 entries). */
  numInferenceSteps = 0;
  /** Standard deviation of the initial noise: multiply N(0, I) latents by this before the first step. */
  initNoiseSigma = 1;
  #ctx: GpuContext | null = null;
  #state = new Set<Tensor>();
  #lastStep: number | null = null;
  #taken = 0;

  constructor(readonly config: C) {
    this.alphasCumprod = alphasCumprodOf(config);
  }

  /** Builds the schedule for `n` inference steps (diffusers' `set_timesteps`), clears any state and returns it. */
  setTimesteps(n: number): Float64Array {
    const N = this.config.num_train_timesteps;
    if (!Number.isInteger(n) || n < 1 || n > N) {
      throw new RangeError(
        `${this.className}.setTimesteps: numInferenceSteps must be an integer in [1, ${N}], got ${n}`,
      );
    }
    this.reset();
    this.numInferenceSteps = n;
    this.timesteps = this.buildSchedule(n);
    return this.timesteps;
  }

  /** Fills the schedule (timesteps, sigmas, initNoiseSigma) for `n` steps. */
  protected abstract buildSchedule(n: number): Float64Array;

  /** The U-Net input at step `stepIndex`. Identity (the same tensor) unless the scheduler scales it (Euler). */
  scaleModelInput(_rec: Recorder, sample: Tensor, stepIndex: number): Tensor {
    this.checkIndex("scaleModelInput", stepIndex);
    return sample;
  }

  /**
   * One denoising step: the sample at the next (less noisy) timestep, from the model output at
   * `timesteps[stepIndex]`. Records on `rec`; returns a new tensor the caller owns.
   */
  abstract step(rec: Recorder, modelOutput: Tensor, stepIndex: number, sample: Tensor): Tensor;

  /** The forward process at an integer training timestep: √ᾱₜ·original + √(1 − ᾱₜ)·noise. */
  addNoise(rec: Recorder, original: Tensor, noise: Tensor, timestep: number): Tensor {
    const N = this.config.num_train_timesteps;
    if (!Number.isInteger(timestep) || timestep < 0 || timestep >= N) {
      throw new RangeError(`${this.className}.addNoise: timestep must be an integer in [0, ${N}), got ${timestep}`);
    }
    assertShape(`${this.className}.addNoise noise "${noise.label}"`, noise.shape, original.shape);
    const a = this.alphasCumprod[timestep];
    return lincomb(rec, [[Math.sqrt(a), original], [Math.sqrt(1 - a), noise]], { label: "noisy" });
  }

  /** Frees the scheduler's saved tensors and forgets the steps taken. Call once the last step's work is submitted. */
  reset(): void {
    this.#ctx?.release(...this.#state);
    this.#state.clear();
    this.#lastStep = null;
    this.#taken = 0;
    this.clearState();
  }

  /** Drops subclass references to saved tensors (they are already freed). */
  protected clearState(): void {}

  /** Checks that the schedule exists and `stepIndex` is in it. */
  protected checkIndex(what: string, stepIndex: number): void {
    const n = this.timesteps.length;
    if (n === 0) throw new Error(`${this.className}.${what}: call setTimesteps() first`);
    if (!Number.isInteger(stepIndex) || stepIndex < 0 || stepIndex >= n) {
      throw new RangeError(`${this.className}.${what}: stepIndex must be an integer in [0, ${n}), got ${stepIndex}`);
    }
  }

  /** Checks the arguments of `step`. */
  protected checkStep(modelOutput: Tensor, stepIndex: number, sample: Tensor): void {
    this.checkIndex("step", stepIndex);
    for (const t of [modelOutput, sample]) {
      if (t.dtype !== "f32") {
        throw new TypeError(`${this.className}.step: "${t.label}" ${fmtShape(t.shape)} is ${t.dtype}, expected f32`);
      }
    }
    assertShape(
      `${this.className}.step model output "${modelOutput.label}" vs sample`,
      modelOutput.shape,
      sample.shape,
    );
  }

  /**
   * For multistep schedulers: checks that `stepIndex` follows the previous step (the first step after a reset may
   * start anywhere, e.g. image-to-image) and returns how many steps were taken before this one.
   */
  protected advance(stepIndex: number): number {
    if (this.#lastStep !== null && stepIndex !== this.#lastStep + 1) {
      throw new RangeError(
        `${this.className}.step: step ${stepIndex} after step ${this.#lastStep}; a multistep scheduler takes its ` +
          `steps in order (call reset() to start over)`,
      );
    }
    this.#lastStep = stepIndex;
    return this.#taken++;
  }

  /** Takes ownership of a state tensor: it survives the caller's scopes and is freed by `reset()` or `drop()`. */
  protected keep(rec: Recorder, t: Tensor): Tensor {
    this.#ctx = rec.ctx;
    this.#state.add(rec.ctx.persist(t));
    return t;
  }

  /** A state tensor no longer needed: freed once `rec` is submitted. */
  protected drop(rec: Recorder, t: Tensor): void {
    if (this.#state.delete(t)) rec.releaseAfterSubmit(t);
  }

  /** An owned copy of `t` (state the caller may free, e.g. a model output), recorded on `rec`. */
  protected keepCopy(rec: Recorder, t: Tensor, label: string): Tensor {
    const copy = this.keep(rec, rec.ctx.tensor(t.shape, "f32", label));
    rec.copy(t, copy, byteLength(t));
    return copy;
  }
}
