/**
 * DPM-Solver++ (Lu et al. 2022), multistep, order 1 or 2 ("DPM++ 2M"): diffusers' `DPMSolverMultistepScheduler`.
 * @module
 */
import type { Recorder } from "../gpu/recorder.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { lincomb, type LincombTerm } from "../ops/lincomb.ts";
import { NoiseScheduler, npArange, npLinspace0, npRound, predictions, trainSigmas } from "./base.ts";
import { type CommonConfig, ConfigReader, type RawSchedulerConfig } from "./config.ts";

/** The `DPMSolverMultistepScheduler` fields diffscope reads. */
export interface DPMSolverConfig extends CommonConfig {
  /** 1 (DDIM-equivalent) or 2 (SD's default). */
  readonly solver_order: 1 | 2;
  /** Form of the second-order correction. */
  readonly solver_type: "midpoint" | "heun";
  /** First order at the last step when there are fewer than 15 steps. */
  readonly lower_order_final: boolean;
  /** First order at the last step always. */
  readonly euler_at_final: boolean;
  /** Timesteps whose log-SNR λ is below this are cut off the schedule (−∞: none). */
  readonly lambda_min_clipped: number;
  /**
   * σ after the last step. Absent in diffusers v0.25.0 configs, which behave as "sigma_min" (σ of training timestep 0);
   * later diffusers versions write "zero" (a first-order final step to x̂₀).
   */
  readonly final_sigmas_type: "sigma_min" | "zero";
}

/**
 * `DPMSolverMultistepScheduler` with `algorithm_type: "dpmsolver++"`. With αₜ = 1/√(σₜ² + 1), σ'ₜ = σₜ·αₜ,
 * λₜ = log αₜ − log σ'ₜ and h = λ_t − λ_s, each step first saves the data prediction m₀ = x̂₀ (a GPU tensor the
 * scheduler owns), then
 *
 *     first order:   x_t = (σ'_t/σ'_s)·x − α_t·(e^{−h} − 1)·m₀
 *     second order:  D₁ = (m₀ − m₁)/r₀,  r₀ = (λ_s − λ_{s₁})/h
 *       midpoint:    x_t = (σ'_t/σ'_s)·x − α_t·(e^{−h} − 1)·(m₀ + D₁/2)
 *       heun:        x_t = (σ'_t/σ'_s)·x − α_t·(e^{−h} − 1)·m₀ + α_t·((e^{−h} − 1)/h + 1)·D₁
 *
 * where m₁ is the previous step's saved prediction. The first step is first order (no m₁ yet).
 */
export class DPMSolverMultistepScheduler extends NoiseScheduler<DPMSolverConfig> {
  readonly className = "DPMSolverMultistepScheduler";
  /** σ of each step, then the final σ (length n + 1; float32 values). */
  sigmas: Float64Array = new Float64Array(0);
  /** σ at every training timestep. */
  readonly trainSigmas: Float64Array;
  /** Saved data predictions, oldest first (at most `solver_order`). */
  #outputs: Tensor[] = [];

  /** Reads `raw` (a `scheduler_config.json` object); `source` names it in errors. */
  constructor(raw: RawSchedulerConfig, source?: string) {
    const r = new ConfigReader("DPMSolverMultistepScheduler", raw, source);
    const common = r.common("linspace");
    r.only("algorithm_type", "dpmsolver++", "dpmsolver++");
    r.only("thresholding", false, false);
    r.only("use_karras_sigmas", false, false);
    r.only("use_lu_lambdas", false, false);
    r.only("variance_type", null, null);
    super({
      ...common,
      solver_order: r.oneOf<1 | 2>("solver_order", 2, [1, 2]),
      solver_type: r.oneOf<"midpoint" | "heun">("solver_type", "midpoint", ["midpoint", "heun"]),
      lower_order_final: r.bool("lower_order_final", true),
      euler_at_final: r.bool("euler_at_final", false),
      lambda_min_clipped: r.number("lambda_min_clipped", -Infinity),
      final_sigmas_type: r.oneOf<"sigma_min" | "zero">("final_sigmas_type", "sigma_min", ["sigma_min", "zero"]),
    });
    this.trainSigmas = trainSigmas(this.alphasCumprod);
  }

  protected buildSchedule(n: number): Float64Array {
    const c = this.config, N = c.num_train_timesteps;
    // λₜ decreases with t; diffusers drops the timesteps whose λ is below lambda_min_clipped.
    const clipped =
      this.alphasCumprod.filter((a) => Math.log(Math.sqrt(a)) - Math.log(Math.sqrt(1 - a)) < c.lambda_min_clipped)
        .length;
    const last = N - clipped;
    let ts: Float64Array;
    if (c.timestep_spacing === "linspace") {
      ts = npLinspace0(last - 1, n + 1).map(npRound).reverse().subarray(0, n);
    } else if (c.timestep_spacing === "leading") {
      const ratio = Math.floor(last / (n + 1));
      ts = new Float64Array(n).map((_, k) => (n - k) * ratio + c.steps_offset);
    } else {
      ts = npArange(last, 0, -N / n).map((t) => npRound(t) - 1);
    }
    const final = c.final_sigmas_type === "zero" ? 0 : this.trainSigmas[0];
    this.sigmas = Float64Array.from([...Array.from(ts, (t) => this.trainSigmas[t]), final]);
    this.initNoiseSigma = 1;
    return Float64Array.from(ts);
  }

  protected override clearState(): void {
    this.#outputs = [];
  }

  step(rec: Recorder, modelOutput: Tensor, stepIndex: number, sample: Tensor): Tensor {
    this.checkStep(modelOutput, stepIndex, sample);
    const c = this.config, taken = this.advance(stepIndex), n = this.timesteps.length;
    const lowerOrderFinal = stepIndex === n - 1 &&
      (c.euler_at_final || (c.lower_order_final && n < 15) || c.final_sigmas_type === "zero");
    const [as, ss] = alphaSigma(this.sigmas[stepIndex]);
    const [at, st] = alphaSigma(this.sigmas[stepIndex + 1]);
    const { x0 } = predictions(c.prediction_type, as, ss);
    const m0 = this.keep(rec, lincomb(rec, [[x0[0], sample], [x0[1], modelOutput]], { label: "dpm:x0_pred" }));
    if (this.#outputs.length === c.solver_order) this.drop(rec, this.#outputs.shift()!);
    this.#outputs.push(m0);
    const h = lambda(at, st) - lambda(as, ss);
    const phi = at * Math.expm1(-h); // α_t·(e^{−h} − 1); −α_t when σ_t = 0 (h = ∞)
    const terms: LincombTerm[] = [[st / ss, sample], [-phi, m0]];
    if (c.solver_order === 2 && taken >= 1 && !lowerOrderFinal) {
      const [a1, s1] = alphaSigma(this.sigmas[stepIndex - 1]);
      const r0 = (lambda(as, ss) - lambda(a1, s1)) / h;
      const cD1 = c.solver_type === "midpoint" ? -0.5 * phi : at * (Math.expm1(-h) / h + 1);
      const m1 = this.#outputs[this.#outputs.length - 2];
      terms[1] = [-phi + cD1 / r0, m0];
      terms.push([-cD1 / r0, m1]);
    }
    return lincomb(rec, terms, { label: "prev_sample" });
  }
}

/** (α, σ') of the VP process at Karras noise level σ: α = 1/√(σ² + 1), σ' = σ·α. */
function alphaSigma(sigma: number): [number, number] {
  const a = 1 / Math.sqrt(sigma * sigma + 1);
  return [a, sigma * a];
}

/** Log signal-to-noise ratio λ = log α − log σ'. */
function lambda(alpha: number, sigma: number): number {
  return Math.log(alpha) - Math.log(sigma);
}
