/**
 * Concept attribution (CAD): the gradient of a concept score J with respect to chosen U-Net parameters, summed
 * over timesteps and samples in f32, from which the scores S = w ⊙ ∂J/∂w follow.
 *
 * - erase: J = ‖ε(z_t, c) − stopgrad(ε(z_t, c_base))‖², one U-Net call on the batch [c, c_base] per (sample,
 *   timestep), with z_t from a DDIM rollout at guidance 3.0 from fresh seeded noise. Each sample is one rollout
 *   scored at each of its timesteps (the reference code starts a fresh rollout for every timestep index; the z_t
 *   have the same distribution and this costs T× fewer U-Net calls). z_t is the latent the U-Net sees at t — not
 *   one step past it, as the reference code's has it.
 * - amplify: J = mean((ε(x_t, c) − ε)²), the denoising loss, over the same timesteps on latents of concept images
 *   (generated from "a photo of {concept}", kept as latents, so no [0, 1]-without-scaling bug; or given latents).
 * Work is split into units (one gradient call each) so a caller can checkpoint and resume between units.
 * Runtime-agnostic.
 * @module
 */
import type { Tensor } from "../gpu/tensor.ts";
import { Tape } from "../autodiff/tape.ts";
import { mseLoss, stopGradDiffLoss } from "../autodiff/loss.ts";
import { type ParamSelector, selectNames } from "../autodiff/select.ts";
import { concat } from "../ops/concat.ts";
import { guidance as cfgCombine } from "../ops/cfg.ts";
import { initialLatents, type StableDiffusionPipeline } from "../pipeline/stable_diffusion.ts";
import { createScheduler } from "../schedulers/mod.ts";
import type { NoiseScheduler } from "../schedulers/base.ts";
import type { RawSchedulerConfig } from "../schedulers/config.ts";

/** Which concept score. */
export type AttributionMode = "erase" | "amplify";

/** Options of {@linkcode Attribution}. */
export interface AttributeOptions {
  /** The concept prompt c (erase) or the concept word (amplify builds "a photo of {concept}" images). */
  concept: string;
  mode?: AttributionMode;
  /** The base prompt c_base of the erase score (default ""). */
  basePrompt?: string;
  /** Timesteps per sample: a DDIM schedule of this many steps (default 50). */
  timesteps?: number;
  /** Rollouts (erase) or concept images (amplify); default 1. */
  samples?: number;
  /** Parameters to score (default the 32 FF weights of the 16 transformer blocks). */
  params?: ParamSelector;
  /** Guidance of the erase rollouts (default 3.0) and of amplify's concept images (default 7.5). */
  guidance?: number;
  /** Seed of every random draw (noise of rollouts and of add_noise). */
  seed?: number;
  /** Keep each erase unit's z_t (host copies) for the faithfulness check. */
  keepLatents?: boolean;
}

/** A scored point: the latent z_t the U-Net saw at timestep t (erase mode). */
export interface ScoredPoint {
  latents: Float32Array;
  shape: number[];
  step: number;
  timestep: number;
}

/** The FF weights CAD scores by default. */
export const CAD_DEFAULT_PARAMS = "*.ff.net.0.proj.weight,*.ff.net.2.weight";

/** One unit of work: a gradient call at sample `sample`, timestep index `step`. */
export interface AttributionUnit {
  sample: number;
  step: number;
}

/** Gradient accumulation for one concept; run units in order (they share rollout state per sample). */
export class Attribution {
  readonly tape: Tape;
  readonly names: string[];
  readonly grads: Map<string, Tensor>;
  readonly mode: AttributionMode;
  readonly T: number;
  readonly samples: number;
  #sampleState: { sample: number; latents: Tensor; x0?: Tensor } | null = null;
  #cond: Tensor | null = null;
  #rollCond: Tensor | null = null;
  /** DDIM with the model's noise schedule, whatever sampler the pipeline uses. */
  readonly ddim: NoiseScheduler;
  /** Units done so far (a caller persists it with the gradients to resume). */
  done = 0;
  /** With `keepLatents`: the points scored so far in this process. */
  readonly points: ScoredPoint[] = [];

  constructor(readonly pipe: StableDiffusionPipeline, readonly opts: AttributeOptions) {
    this.mode = opts.mode ?? "erase";
    this.T = opts.timesteps ?? 50;
    this.samples = opts.samples ?? 1;
    this.tape = new Tape(pipe.ctx);
    this.names = selectNames(pipe.unet.params.keys(), opts.params ?? CAD_DEFAULT_PARAMS);
    this.grads = new Map(this.names.map((n) => [n, this.tape.watch(pipe.unet.params.get(n)!)]));
    this.ddim = createScheduler({ ...pipe.schedulerConfig, _class_name: "DDIMScheduler" } as RawSchedulerConfig);
  }

  /** Total units: samples × timesteps. */
  get total(): number {
    return this.samples * this.T;
  }

  /** Restores accumulated gradients (e.g. from a checkpoint) and the number of units they cover. */
  restore(grads: Map<string, Float32Array>, done: number): void {
    for (const [n, g] of this.grads) {
      const d = grads.get(n);
      if (!d) throw new Error(`attribution checkpoint has no gradient for "${n}"`);
      this.pipe.ctx.write(g, d);
    }
    this.done = done;
  }

  #seed(sample: number, salt: number): number {
    return ((this.opts.seed ?? 0) * 1000003 + sample * 7919 + salt) >>> 0;
  }

  /** The erase score's conditioning [c, c_base] (or amplify's [c]); owned by this object. */
  conditioning(): Promise<Tensor> {
    return this.#conditioning();
  }

  async #conditioning(): Promise<Tensor> {
    if (this.#cond) return this.#cond;
    const p = this.pipe;
    const prompts = this.mode === "erase"
      ? [this.opts.concept, this.opts.basePrompt ?? ""]
      : [this.opts.concept.includes(" ") ? this.opts.concept : `a photo of ${this.opts.concept}`];
    this.#cond = await p.encodePrompts(prompts); // erase: [c, c_base]; amplify: [c]
    return this.#cond;
  }

  /** Starts sample `s`: fresh noise (erase: the rollout's start; amplify: a concept image's latents). */
  async #startSample(s: number): Promise<void> {
    const p = this.pipe, ctx = p.ctx;
    this.#releaseSample();
    const cfgU = p.unet.arch.config;
    const shape = [1, cfgU.inChannels, cfgU.sampleSize, cfgU.sampleSize];
    this.ddim.setTimesteps(this.T);
    if (this.mode === "erase") {
      const noise = initialLatents(shape, this.#seed(s, 1)).map((v) => v * this.ddim.initNoiseSigma);
      this.#sampleState = { sample: s, latents: ctx.upload(noise, shape, "f32", "rollout") };
    } else {
      const concept = this.opts.concept.includes(" ") ? this.opts.concept : `a photo of ${this.opts.concept}`;
      const r = await p.generate({
        prompt: concept,
        steps: this.T,
        guidance: this.opts.guidance ?? 7.5,
        seed: this.#seed(s, 2),
      });
      if (r.image !== r.latents) ctx.release(r.image);
      this.#sampleState = { sample: s, latents: r.latents, x0: r.latents };
    }
  }

  #releaseSample(): void {
    if (this.#sampleState) this.pipe.ctx.release(this.#sampleState.latents);
    this.#sampleState = null;
  }

  /** Runs the next unit (a gradient call); returns it, or null when all are done. */
  async next(): Promise<AttributionUnit | null> {
    if (this.done >= this.total) return null;
    const unit = { sample: Math.floor(this.done / this.T), step: this.done % this.T };
    const p = this.pipe, ctx = p.ctx, sched = this.ddim;
    if (!this.#sampleState || this.#sampleState.sample !== unit.sample || unit.step === 0) {
      await this.#startSample(unit.sample);
      if (this.mode === "erase") {
        for (let i = 0; i < unit.step; i++) await this.#rolloutStep(i); // resuming mid-rollout: replay
      }
    }
    const cond = await this.#conditioning();
    const t = sched.timesteps[unit.step];
    const rec = ctx.recorder(`attribution ${unit.sample}/${unit.step}`);
    const st = this.#sampleState!;
    if (this.mode === "erase") {
      const z = st.latents; // the latent the U-Net sees at t
      if (this.opts.keepLatents) {
        this.points.push({ latents: await ctx.readF32(z), shape: [...z.shape], step: unit.step, timestep: t });
      }
      const batch = concat(rec, [z, z], { axis: 0 });
      const input = sched.scaleModelInput(rec, batch, unit.step);
      const ts = ctx.upload(new Float32Array(2).fill(t), [2]);
      const eps = p.unet.forward(rec, { sample: input, timesteps: ts, encoderHiddenStates: cond }, {
        tape: this.tape,
        step: unit.step,
        timestep: t,
        cfg: false,
      });
      const loss = stopGradDiffLoss(rec, eps);
      this.tape.backward(rec, [[eps, loss.seed]]);
      rec.releaseAfterSubmit(...new Set([batch, input, ts, eps, loss.seed, loss.value]));
      await rec.submit();
      await this.#rolloutStep(unit.step);
    } else {
      const noiseData = initialLatents(st.x0!.shape, this.#seed(unit.sample, 1000 + unit.step));
      const noise = ctx.upload(noiseData, st.x0!.shape, "f32", "noise");
      const xt = sched.addNoise(rec, st.x0!, noise, Math.round(t));
      const input = sched.scaleModelInput(rec, xt, unit.step);
      const ts = ctx.upload(new Float32Array(1).fill(t), [1]);
      const eps = p.unet.forward(rec, { sample: input, timesteps: ts, encoderHiddenStates: cond }, {
        tape: this.tape,
        step: unit.step,
        timestep: t,
        cfg: false,
      });
      const loss = mseLoss(rec, eps, noise);
      this.tape.backward(rec, [[eps, loss.seed]]);
      rec.releaseAfterSubmit(...new Set([noise, xt, input, ts, eps, loss.seed, loss.value]));
      await rec.submit();
    }
    this.done++;
    if (unit.step === this.T - 1) this.#releaseSample();
    return unit;
  }

  /** One DDIM step of the erase rollout at guidance 3.0 (batch [c_base, c]: diffusers' [uncond, cond]). */
  async #rolloutStep(i: number): Promise<void> {
    const p = this.pipe, ctx = p.ctx, sched = this.ddim, st = this.#sampleState!;
    this.#rollCond ??= await p.encodePrompts([this.opts.basePrompt ?? "", this.opts.concept]);
    const rec = ctx.recorder(`rollout ${st.sample}/${i}`);
    const batch = concat(rec, [st.latents, st.latents], { axis: 0 });
    const input = sched.scaleModelInput(rec, batch, i);
    const t = sched.timesteps[i];
    const ts = ctx.upload(new Float32Array(2).fill(t), [2]);
    const noise = p.unet.forward(rec, { sample: input, timesteps: ts, encoderHiddenStates: this.#rollCond });
    const eps = cfgCombine(rec, noise, this.opts.guidance ?? 3.0);
    const next = sched.step(rec, eps, i, st.latents);
    rec.releaseAfterSubmit(...new Set([batch, input, ts, noise, eps]));
    await rec.submit();
    ctx.release(st.latents);
    st.latents = next;
  }

  /** Frees everything (gradients included). */
  release(): void {
    this.#releaseSample();
    this.pipe.ctx.release(this.#cond, this.#rollCond, ...this.grads.values());
    this.tape.discard();
    this.ddim.reset();
  }
}
