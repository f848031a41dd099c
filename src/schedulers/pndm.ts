/**
 * PNDM's pseudo linear multistep method (PLMS, Liu et al. 2022) with `skip_prk_steps`: diffusers' `PNDMScheduler`,
 * Stable Diffusion v1.4's default scheduler.
 * @module
 */
import type { Recorder } from "../gpu/recorder.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { lincomb, type LincombTerm } from "../ops/lincomb.ts";
import { NoiseScheduler, spacedTimesteps } from "./base.ts";
import { type CommonConfig, ConfigReader, type RawSchedulerConfig } from "./config.ts";

/** The `PNDMScheduler` fields diffscope reads. */
export interface PNDMConfig extends CommonConfig {
  /** Always true here: the Runge–Kutta warm-up is not implemented. */
  readonly skip_prk_steps: boolean;
  /** ᾱ after the last step: 1 if true, else ᾱ₀ (SD: false). */
  readonly set_alpha_to_one: boolean;
}

/** Adams–Bashforth weights for 1 … 4 saved model outputs, newest first. */
const PLMS_WEIGHTS = [[1], [3 / 2, -1 / 2], [23 / 12, -16 / 12, 5 / 12], [55 / 24, -59 / 24, 37 / 24, -9 / 24]];

/**
 * `PNDMScheduler` with `skip_prk_steps: true`. For n steps the schedule has n + 1 entries: the second timestep is
 * repeated (e.g. 981, 961, 961, 941, … 1). Steps 0 and 1 together form a second-order (Heun-like) step from the
 * first sample; after that each step combines the last up-to-four model outputs e (newest first) with Adams–Bashforth
 * weights, ê = Σ wₖ·eₖ, and moves t → t' = t − ⌊N/n⌋ with formula (9) of the PNDM paper:
 *
 *     x_t' = √(ᾱ_t'/ᾱ_t)·x − (ᾱ_t' − ᾱ_t)·ê / (ᾱ_t·√(1 − ᾱ_t') + √(ᾱ_t·(1 − ᾱ_t)·ᾱ_t'))
 *
 * The saved model outputs (and the first sample) are copies the scheduler owns on the GPU. As in diffusers,
 * v-prediction converts the combined output: ê ← √ᾱ_t·ê + √(1 − ᾱ_t)·x.
 */
export class PNDMScheduler extends NoiseScheduler<PNDMConfig> {
  readonly className = "PNDMScheduler";
  /** ᾱ used after the final step. */
  readonly finalAlphaCumprod: number;
  /** Saved model outputs, oldest first (at most 4; the repeated step's output is never saved). */
  #ets: Tensor[] = [];
  /** The sample of step 0, which step 1 starts from again. */
  #firstSample: Tensor | null = null;

  /** Reads `raw` (a `scheduler_config.json` object); `source` names it in errors. */
  constructor(raw: RawSchedulerConfig, source?: string) {
    const r = new ConfigReader("PNDMScheduler", raw, source);
    const common = r.common("leading");
    super({
      ...common,
      skip_prk_steps: r.only("skip_prk_steps", false, true),
      set_alpha_to_one: r.bool("set_alpha_to_one", false),
    });
    this.finalAlphaCumprod = this.config.set_alpha_to_one ? 1 : this.alphasCumprod[0];
  }

  protected buildSchedule(n: number): Float64Array {
    // diffusers: plms = concat(ts[:-1], ts[-2:-1], ts[-1:])[::-1] over the ascending ts, i.e. the second-largest
    // timestep repeated.
    const desc = spacedTimesteps(this.config, n);
    return n === 1 ? desc : Float64Array.from([desc[0], ...desc.subarray(1, 2), ...desc.subarray(1)]);
  }

  protected override clearState(): void {
    this.#ets = [];
    this.#firstSample = null;
  }

  step(rec: Recorder, modelOutput: Tensor, stepIndex: number, sample: Tensor): Tensor {
    this.checkStep(modelOutput, stepIndex, sample);
    const counter = this.advance(stepIndex);
    const ratio = Math.floor(this.config.num_train_timesteps / this.numInferenceSteps);
    let t = this.timesteps[stepIndex], prevT = t - ratio;
    let base = sample;
    let combo: LincombTerm[];
    if (counter === 1) {
      // The repeated timestep: redo step 0 from its sample with the mean of both model outputs.
      [prevT, t] = [t, t + ratio];
      base = this.#firstSample ?? sample;
      combo = [[0.5, modelOutput], [0.5, this.#ets.at(-1) ?? modelOutput]];
    } else {
      if (this.#ets.length === 4) this.drop(rec, this.#ets.shift()!);
      this.#ets.push(this.keepCopy(rec, modelOutput, "pndm:ets"));
      if (counter === 0) this.#firstSample = this.keepCopy(rec, sample, "pndm:first_sample");
      const w = PLMS_WEIGHTS[this.#ets.length - 1];
      combo = w.map((wk, k): LincombTerm => [wk, this.#ets[this.#ets.length - 1 - k]]);
    }
    const a = this.alphasCumprod[t], ap = prevT >= 0 ? this.alphasCumprod[prevT] : this.finalAlphaCumprod;
    const sampleCoef = Math.sqrt(ap / a);
    const k = (ap - a) / (a * Math.sqrt(1 - ap) + Math.sqrt(a * (1 - a) * ap));
    // v-prediction: ê ← √ᾱ·ê + √(1−ᾱ)·x, folded into the coefficients.
    const [cBase, cCombo] = this.config.prediction_type === "epsilon"
      ? [sampleCoef, -k]
      : [sampleCoef - k * Math.sqrt(1 - a), -k * Math.sqrt(a)];
    const prev = lincomb(rec, [[cBase, base], ...combo.map(([w, e]): LincombTerm => [cCombo * w, e])], {
      label: "prev_sample",
    });
    if (counter === 1 && this.#firstSample) {
      this.drop(rec, this.#firstSample);
      this.#firstSample = null;
    }
    return prev;
  }
}
