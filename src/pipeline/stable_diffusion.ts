/**
 * Text-to-image with a diffusers Stable Diffusion folder: prompt encoding, classifier-free guidance with the
 * `[uncond, cond]` batch order of diffusers, a scheduler loop, VAE decoding — with the U-Net's and text encoder's
 * hooks live during sampling and a callback per step. Runtime-agnostic (model files come through `ModelFiles`).
 * @module
 */
import type { GpuContext } from "../gpu/context.ts";
import { fmtShape, numel, type Tensor } from "../gpu/tensor.ts";
import type { Hooks } from "../hooks/hooks.ts";
import { concat } from "../ops/concat.ts";
import { guidance, toRgba8 } from "../ops/cfg.ts";
import { type ModelFiles, readJson } from "../models/files.ts";
import { checkWeightStorage, type WeightStorage } from "../models/checkpoint.ts";
import { loadTextEncoder } from "../models/clip/load.ts";
import type { ClipTextModel } from "../models/clip/text.ts";
import { loadUNet } from "../models/unet/load.ts";
import type { UNet2DConditionModel } from "../models/unet/model.ts";
import { loadVAE } from "../models/vae/load.ts";
import type { AutoencoderKL } from "../models/vae/model.ts";
import { createScheduler } from "../schedulers/mod.ts";
import type { NoiseScheduler } from "../schedulers/base.ts";
import { type ClipTokenizer, loadTokenizer } from "../text/tokenizer.ts";
import { rng } from "../ref/random.ts";

/** Thrown when a model folder is not a usable Stable Diffusion pipeline. */
export class PipelineError extends Error {
  override name = "PipelineError";
}

/** Scheduler names accepted by {@linkcode loadPipeline} and the CLI. */
export const SCHEDULER_NAMES = {
  ddim: "DDIMScheduler",
  pndm: "PNDMScheduler",
  euler: "EulerDiscreteScheduler",
  "dpm++2m": "DPMSolverMultistepScheduler",
} as const;

/** Options of {@linkcode loadPipeline}. */
export interface LoadPipelineOptions {
  /** Weights variant to prefer (e.g. "fp16"). */
  variant?: string;
  /** Replace the folder's scheduler class, keeping its config (as `Scheduler.from_config` does). */
  scheduler?: keyof typeof SCHEDULER_NAMES;
  /** Called as components load. */
  onProgress?: (component: string, done: number, total: number) => void;
  /**
   * How the weight matrices of all three models are stored: "f16" halves their GPU memory (needs the device
   * feature `shader-f16`; inference only: their gradients cannot be taken). Default "f32".
   */
  weights?: WeightStorage;
}

/** Options of one generation. */
export interface GenerateOptions {
  /** One prompt per image. */
  prompt: string | string[];
  /** Negative prompts (default ""): one, or one per prompt. */
  negativePrompt?: string | string[];
  /** Sampling steps (default 50). */
  steps?: number;
  /** Classifier-free guidance scale (default 7.5); ≤ 1 runs the cond batch only, as diffusers does. */
  guidance?: number;
  /** Seed of the initial noise (default 0); see {@linkcode initialLatents}. */
  seed?: number;
  /** Initial latents [B, C, h, w] instead of seeded noise (already scaled by the scheduler's sigma or not: as given). */
  latents?: Float32Array | Tensor;
  /** Image size in pixels (default: the U-Net's sample_size × the VAE's scale factor). */
  height?: number;
  width?: number;
  /** Hooks of the U-Net (paths as given, or with `unet.`) and the text encoder (`text_encoder.` paths). */
  hooks?: Hooks;
  /** Keep a host copy of every step's latents (`GenerateResult.stepLatents`). */
  saveSteps?: boolean;
  /** Called after each step with the new latents (on the GPU; read them if needed). */
  onStep?: (info: { step: number; timestep: number; steps: number; latents: Tensor }) => void | Promise<void>;
}

/** What a generation returns. Tensors are the caller's to release. */
export interface GenerateResult {
  /** Final latents [B, C, h, w]. */
  latents: Tensor;
  /** The decoded image [B, 3, H, W] (raw VAE output in about [−1, 1]). */
  image: Tensor;
  /** RGBA8 pixels, `B·H·W` u32 values (R in the low byte); absent when the image does not have 3 channels. */
  pixels?: Uint32Array;
  /** Timesteps the U-Net saw. */
  timesteps: number[];
  /** Latents after each step, when `saveSteps` was set. */
  stepLatents?: Float32Array[];
}

/**
 * Initial latents from a seed: a portable generator (mulberry32 uniforms, Box–Muller normals, computed in float64
 * and rounded to f32), so a seed gives the same latents in Deno and in every browser. It is not torch's generator:
 * diffusers' images for a seed differ; pass `latents` to reproduce one exactly.
 */
export function initialLatents(shape: readonly number[], seed: number): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(numel(shape));
  for (let i = 0; i < out.length; i++) out[i] = r.normal();
  return out;
}

/** A loaded Stable Diffusion pipeline. */
export class StableDiffusionPipeline {
  constructor(
    readonly ctx: GpuContext,
    readonly tokenizer: ClipTokenizer,
    readonly textEncoder: ClipTextModel,
    readonly unet: UNet2DConditionModel,
    /** Null for a pixel-space model (`"vae": [null, null]`): latents are the image in [−1, 1]. */
    readonly vae: AutoencoderKL | null,
    readonly scheduler: NoiseScheduler,
    /** `scheduler/scheduler_config.json` as read (to build another sampler on the same noise schedule). */
    readonly schedulerConfig: Readonly<Record<string, unknown>> = {},
  ) {}

  /** Pixels per latent: 2^(VAE levels − 1), or 1 without a VAE. */
  get vaeScaleFactor(): number {
    return this.vae ? 2 ** (this.vae.arch.config.blockOutChannels.length - 1) : 1;
  }

  /** Frees every weight. */
  release(): void {
    this.textEncoder.release();
    this.unet.release();
    this.vae?.release();
  }

  /** Text conditioning [B, 77, D] of the prompts (one forward of the text encoder). */
  async encodePrompts(prompts: string[], hooks?: Hooks, cfg = false): Promise<Tensor> {
    const ids = this.tokenizer.tokenize(prompts);
    const rec = this.ctx.recorder("text encoder");
    const out = this.textEncoder.forward(rec, { data: ids.inputIds, shape: ids.shape }, { hooks, cfg });
    await rec.submit();
    if (out.textEmbeds) this.ctx.release(out.textEmbeds);
    this.ctx.release(out.pooledOutput);
    return out.lastHiddenState;
  }

  /** Runs the sampling loop and decodes the image. */
  async generate(opts: GenerateOptions): Promise<GenerateResult> {
    const ctx = this.ctx;
    const prompts = typeof opts.prompt === "string" ? [opts.prompt] : opts.prompt;
    const B = prompts.length;
    const neg = opts.negativePrompt ?? "";
    const negatives = typeof neg === "string" ? new Array(B).fill(neg) : neg;
    if (negatives.length !== B) throw new RangeError(`generate: ${negatives.length} negative prompts for ${B} prompts`);
    const g = opts.guidance ?? 7.5;
    const doCfg = g > 1;
    const steps = opts.steps ?? 50;
    const cfgU = this.unet.arch.config;
    const f = this.vaeScaleFactor;
    const H = opts.height ?? cfgU.sampleSize * f, W = opts.width ?? cfgU.sampleSize * f;
    if (H % f || W % f) throw new RangeError(`generate: height and width must be multiples of ${f}, got ${H}×${W}`);
    const shape = [B, cfgU.inChannels, H / f, W / f];

    // text conditioning in diffusers' order: [uncond…, cond…]
    const emb = await this.encodePrompts(doCfg ? [...negatives, ...prompts] : prompts, opts.hooks, doCfg);
    const scheduler = this.scheduler;
    const timesteps = [...scheduler.setTimesteps(steps)];
    let latents: Tensor;
    if (opts.latents instanceof Float32Array || opts.latents === undefined) {
      const data = opts.latents ?? initialLatents(shape, opts.seed ?? 0);
      if (data.length !== numel(shape)) {
        throw new TypeError(
          `generate: initial latents have ${data.length} values; ${fmtShape(shape)} needs ${numel(shape)}`,
        );
      }
      // diffusers scales fresh noise by init_noise_sigma; given latents are used as given (prepare_latents does the same)
      latents = ctx.upload(
        opts.latents ? data : data.map((v) => v * scheduler.initNoiseSigma),
        shape,
        "f32",
        "latents",
      );
    } else {
      if (opts.latents.shape.join() !== shape.join()) {
        throw new TypeError(`generate: latents ${fmtShape(opts.latents.shape)} do not match ${fmtShape(shape)}`);
      }
      latents = opts.latents;
    }
    const stepLatents: Float32Array[] = [];
    try {
      for (let i = 0; i < timesteps.length; i++) {
        const t = timesteps[i];
        const rec = ctx.recorder(`step ${i}`);
        const batch = doCfg ? concat(rec, [latents, latents], { axis: 0 }) : latents;
        const input = scheduler.scaleModelInput(rec, batch, i);
        const ts = ctx.upload(new Float32Array(batch.shape[0]).fill(t), [batch.shape[0]], "f32", "timesteps");
        const noise = this.unet.forward(rec, { sample: input, timesteps: ts, encoderHiddenStates: emb }, {
          hooks: opts.hooks,
          step: i,
          timestep: t,
          cfg: doCfg,
        });
        const eps = doCfg ? guidance(rec, noise, g) : noise;
        const next = scheduler.step(rec, eps, i, latents);
        rec.releaseAfterSubmit(...new Set([batch, input, noise, eps, ts].filter((x) => x !== latents && x !== next)));
        await rec.submit();
        if (latents !== opts.latents) ctx.release(latents);
        latents = next;
        if (opts.saveSteps) stepLatents.push(await ctx.readF32(latents));
        await opts.onStep?.({ step: i, timestep: t, steps: timesteps.length, latents });
      }
    } finally {
      ctx.release(emb);
      scheduler.reset();
    }
    const image = this.vae ? await this.vae.decodeLatents(latents) : latents;
    let pixels: Uint32Array | undefined;
    if (image.shape[1] === 3) {
      const rec = ctx.recorder("pixels");
      const px = toRgba8(rec, image);
      await rec.submit();
      pixels = await ctx.read(px) as Uint32Array;
      ctx.release(px);
    }
    return { latents, image, pixels, timesteps, stepLatents: opts.saveSteps ? stepLatents : undefined };
  }
}

/** Loads and validates a diffusers Stable Diffusion folder (`model_index.json` and its components). */
export async function loadPipeline(
  ctx: GpuContext,
  files: ModelFiles,
  opts: LoadPipelineOptions = {},
): Promise<StableDiffusionPipeline> {
  const index = await readJson(files, "model_index.json").catch((e) => {
    throw new PipelineError(`${files.name} is not a diffusers pipeline folder: ${(e as Error).message}`);
  });
  const component = (name: string): string | null => {
    const v = index[name];
    if (v === undefined) throw new PipelineError(`${files.name}/model_index.json lists no "${name}" component`);
    return Array.isArray(v) && v[1] ? String(v[1]) : null;
  };
  for (const name of ["unet", "text_encoder", "tokenizer", "scheduler"]) {
    if (!component(name)) throw new PipelineError(`${files.name}: component "${name}" is null in model_index.json`);
  }
  const hasVae = component("vae") !== null;
  const weights = checkWeightStorage(ctx, `${files.name}`, opts.weights); // before anything is read
  const progress = (c: string) => (done: number, total: number) => opts.onProgress?.(c, done, total);
  const tokenizer = await loadTokenizer(files).catch((e) => {
    throw new PipelineError((e as Error).message);
  });
  const schedCfg = await readJson(files, "scheduler/scheduler_config.json");
  if (opts.scheduler) schedCfg._class_name = SCHEDULER_NAMES[opts.scheduler];
  const scheduler = createScheduler(schedCfg, `${files.name}/scheduler/scheduler_config.json`);
  // configs first: a mismatch is reported before gigabytes are read
  const cross = (await readJson(files, "unet/config.json")).cross_attention_dim;
  const hidden = (await readJson(files, "text_encoder/config.json")).hidden_size;
  if (cross !== hidden) {
    throw new PipelineError(
      `${files.name}: unet/config.json cross_attention_dim is ${cross} but text_encoder/config.json hidden_size is ` +
        `${hidden}: the text encoder does not belong to this U-Net`,
    );
  }
  const textEncoder = await loadTextEncoder(ctx, files, {
    variant: opts.variant,
    weights,
    onProgress: progress("text_encoder"),
  });
  let unet: UNet2DConditionModel | undefined;
  try {
    unet = await loadUNet(ctx, files, { variant: opts.variant, weights, onProgress: progress("unet") });
    const vae = hasVae
      ? await loadVAE(ctx, files, { variant: opts.variant, weights, onProgress: progress("vae") })
      : null;
    if (vae && vae.arch.config.latentChannels !== unet.arch.config.inChannels) {
      vae.release();
      throw new PipelineError(
        `${files.name}: the VAE has ${vae.arch.config.latentChannels} latent channels, the U-Net takes ${unet.arch.config.inChannels}`,
      );
    }
    return new StableDiffusionPipeline(ctx, tokenizer, textEncoder, unet, vae, scheduler, schedCfg);
  } catch (e) {
    textEncoder.release();
    unet?.release();
    throw e;
  }
}
