/**
 * DDIM (Song et al. 2020), deterministic (η = 0): diffusers' `DDIMScheduler`, SD's usual fast sampler.
 * @module
 */
import type { Recorder } from "../gpu/recorder.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { lincomb } from "../ops/lincomb.ts";
import { NoiseScheduler, predictions, spacedTimesteps } from "./base.ts";
import { type CommonConfig, ConfigReader, type RawSchedulerConfig } from "./config.ts";

/** The `DDIMScheduler` fields diffscope reads. */
export interface DDIMConfig extends CommonConfig {
  /** ᾱ after the last step: 1 if true, else ᾱ₀ (SD: false). */
  readonly set_alpha_to_one: boolean;
}

/**
 * `DDIMScheduler` with η = 0. From timestep t to t' = t − ⌊N/n⌋ (diffusers' rule for every spacing):
 *
 *     x_t' = √ᾱ_t'·x̂₀ + √(1 − ᾱ_t')·ε̂
 *
 * with x̂₀, ε̂ from the prediction type, ᾱ_t' = ᾱ₀ (or 1) past the first timestep. Unsupported: `clip_sample`,
 * `thresholding`, η > 0.
 */
export class DDIMScheduler extends NoiseScheduler<DDIMConfig> {
  readonly className = "DDIMScheduler";
  /** ᾱ used after the final step. */
  readonly finalAlphaCumprod: number;

  /** Reads `raw` (a `scheduler_config.json` object); `source` names it in errors. */
  constructor(raw: RawSchedulerConfig, source?: string) {
    const r = new ConfigReader("DDIMScheduler", raw, source);
    const common = r.common("leading");
    r.only("clip_sample", true, false);
    r.only("thresholding", false, false);
    super({ ...common, set_alpha_to_one: r.bool("set_alpha_to_one", true) });
    this.finalAlphaCumprod = this.config.set_alpha_to_one ? 1 : this.alphasCumprod[0];
  }

  protected buildSchedule(n: number): Float64Array {
    return spacedTimesteps(this.config, n);
  }

  step(rec: Recorder, modelOutput: Tensor, stepIndex: number, sample: Tensor): Tensor {
    this.checkStep(modelOutput, stepIndex, sample);
    const t = this.timesteps[stepIndex];
    const prevT = t - Math.floor(this.config.num_train_timesteps / this.numInferenceSteps);
    const a = this.alphasCumprod[t], ap = prevT >= 0 ? this.alphasCumprod[prevT] : this.finalAlphaCumprod;
    const { x0, eps } = predictions(this.config.prediction_type, Math.sqrt(a), Math.sqrt(1 - a));
    const cx0 = Math.sqrt(ap), ceps = Math.sqrt(1 - ap);
    return lincomb(rec, [
      [cx0 * x0[0] + ceps * eps[0], sample],
      [cx0 * x0[1] + ceps * eps[1], modelOutput],
    ], { label: "prev_sample" });
  }
}
