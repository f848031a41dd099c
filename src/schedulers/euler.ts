/**
 * Euler's method on the probability-flow ODE in σ-space (Karras et al. 2022): diffusers' `EulerDiscreteScheduler`.
 * @module
 */
import type { Recorder } from "../gpu/recorder.ts";
import { assertShape, type Tensor } from "../gpu/tensor.ts";
import { lincomb } from "../ops/lincomb.ts";
import { NoiseScheduler, npInterp, predictions, spacedTimesteps, trainSigmas } from "./base.ts";
import { type CommonConfig, ConfigReader, type RawSchedulerConfig } from "./config.ts";

/** The `EulerDiscreteScheduler` fields diffscope reads (Karras sigmas and log-linear interpolation are not implemented). */
export type EulerConfig = CommonConfig;

/**
 * `EulerDiscreteScheduler` (`s_churn` = 0). Works on x = x_vp·√(σ² + 1) with σ = √((1 − ᾱ)/ᾱ) interpolated linearly
 * at (fractional, float32) timesteps, σ = 0 appended. The U-Net input is x/√(σᵢ² + 1), and
 *
 *     x_{i+1} = x + (σᵢ₊₁ − σᵢ)·(x − x̂₀)/σᵢ          (ε-prediction: x + (σᵢ₊₁ − σᵢ)·ε̂)
 */
export class EulerDiscreteScheduler extends NoiseScheduler<EulerConfig> {
  readonly className = "EulerDiscreteScheduler";
  /** σ of each step, then 0 (length n + 1; float32 values). */
  sigmas: Float64Array = new Float64Array(0);
  /** σ at every training timestep, before interpolation. */
  readonly trainSigmas: Float64Array;

  /** Reads `raw` (a `scheduler_config.json` object); `source` names it in errors. */
  constructor(raw: RawSchedulerConfig, source?: string) {
    const r = new ConfigReader("EulerDiscreteScheduler", raw, source);
    const common = r.common("linspace");
    r.only("interpolation_type", "linear", "linear");
    r.only("use_karras_sigmas", false, false);
    if (common.prediction_type === "v_prediction") r.only("timestep_type", "discrete", "discrete");
    super(common);
    this.trainSigmas = trainSigmas(this.alphasCumprod);
  }

  protected buildSchedule(n: number): Float64Array {
    const ts = spacedTimesteps(this.config, n, false).map(Math.fround);
    this.sigmas = new Float64Array(n + 1);
    ts.forEach((t, i) => this.sigmas[i] = Math.fround(npInterp(t, this.trainSigmas)));
    const max = this.sigmas.reduce((a, b) => Math.max(a, b), 0);
    this.initNoiseSigma = this.config.timestep_spacing === "leading" ? Math.fround(Math.sqrt(max * max + 1)) : max;
    return ts;
  }

  /** x/√(σᵢ² + 1). */
  override scaleModelInput(rec: Recorder, sample: Tensor, stepIndex: number): Tensor {
    this.checkIndex("scaleModelInput", stepIndex);
    const s = this.sigmas[stepIndex];
    return lincomb(rec, [[1 / Math.sqrt(s * s + 1), sample]], { label: "model_input" });
  }

  step(rec: Recorder, modelOutput: Tensor, stepIndex: number, sample: Tensor): Tensor {
    this.checkStep(modelOutput, stepIndex, sample);
    const s = this.sigmas[stepIndex], dt = this.sigmas[stepIndex + 1] - s;
    // x̂₀ in Euler's space: the VP prediction with x_vp = α·x, α = 1/√(σ² + 1).
    const alpha = 1 / Math.sqrt(s * s + 1);
    const { x0 } = predictions(this.config.prediction_type, alpha, s * alpha);
    const x0x = x0[0] * alpha, x0m = x0[1];
    return lincomb(rec, [[1 + dt * (1 - x0x) / s, sample], [-dt * x0m / s, modelOutput]], { label: "prev_sample" });
  }

  /** original + σ(t)·noise, σ interpolated at the (possibly fractional) `timestep` as the schedule's σs are. */
  override addNoise(rec: Recorder, original: Tensor, noise: Tensor, timestep: number): Tensor {
    const N = this.config.num_train_timesteps;
    if (!Number.isFinite(timestep) || timestep < 0 || timestep > N - 1) {
      throw new RangeError(`${this.className}.addNoise: timestep must be in [0, ${N - 1}], got ${timestep}`);
    }
    assertShape(`${this.className}.addNoise noise "${noise.label}"`, noise.shape, original.shape);
    const s = Math.fround(npInterp(timestep, this.trainSigmas));
    return lincomb(rec, [[1, original], [s, noise]], { label: "noisy" });
  }
}
