/**
 * Revelio's image-level activations (`SD-kSAE/extract_feature.py`): a real image is resized (short side) and
 * centre-cropped to `size`, scaled to [−1, 1], VAE-encoded (posterior mode × scaling_factor), noised once at an
 * integer DDPM training timestep t (√ᾱₜ·x₀ + √(1 − ᾱₜ)·ε, fresh seeded ε), and passed through the U-Net once with
 * the empty prompt and no CFG; the hook point's output is mean-pooled over space, one vector [d] per image.
 * Everything after PNG decoding runs on the GPU; the pooled vectors are the only readback (plus the cropped image,
 * kept for feature browsers). Rows come back as {@linkcode CollectedRows}, one per image, for the activation store.
 * Runtime-agnostic.
 *
 * ```ts ignore
 * const col = await PooledCollector.create(pipe, { hook: "mid_block", timestep: 25, size: 256 });
 * const rows = await col.collect([await readPng("cat.png")], 0); // rows[0].activations: [1, 1280] for SD 1.x
 * col.release();
 * ```
 * @module
 */
import type { GpuContext } from "../gpu/context.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { fmtShape, numel, reshape, type Tensor } from "../gpu/tensor.ts";
import { Hooks } from "../hooks/hooks.ts";
import { toRgba8 } from "../ops/cfg.ts";
import { fill } from "../ops/fill.ts";
import { fromRgba8 } from "../ops/from_rgba8.ts";
import { mean } from "../ops/reduce.ts";
import { centerCropBox, resize } from "../ops/resize.ts";
import type { StableDiffusionPipeline } from "../pipeline/stable_diffusion.ts";
import type { NoiseScheduler } from "../schedulers/base.ts";
import { createScheduler } from "../schedulers/mod.ts";
import type { CollectedRows } from "./collect.ts";

/** Revelio's defaults: the bottleneck at t = 25 of 1000, 256-pixel crops. */
export const POOLED_DEFAULTS = { hook: "mid_block", timestep: 25, size: 256, seed: 0 } as const;

/** What {@linkcode PooledCollector} computes. */
export interface PooledOptions {
  /** U-Net hook point whose output is pooled: a whole block (`mid_block`, `up_blocks.1`) or any module/`.delta`. */
  hook?: string;
  /** Integer DDPM training timestep of the single noising (default 25). */
  timestep?: number;
  /** Crop size in pixels: short side resized to it, then centre crop (default 256). */
  size?: number;
  /** Noise of image i is seeded with `seed + i` (default 0), so batching does not change a row. */
  seed?: number;
  /** Keep each cropped input image as RGBA8 in `CollectedRows.image` (default true). */
  keepImages?: boolean;
}

/** One decoded image: packed RGBA8 (R in the low byte), row-major, as `readPng` returns it. */
export interface RgbaImage {
  pixels: Uint32Array;
  width: number;
  height: number;
  /** Where it came from (a file), named in errors. */
  name?: string;
}

/**
 * Records an RGBA8 image as planar f32 [1, 3, H, W] holding the 0…255 byte values (alpha dropped, as PIL's
 * `convert("RGB")`): the pixels are uploaded as packed u32 and unpacked on the GPU (kernels/from_rgba8.wgsl);
 * scaling and resampling follow in {@linkcode preprocessImages}. The upload is freed after the submit. Errors name
 * the image.
 */
export function rgbaToPlanar(rec: Recorder, img: RgbaImage, what = img.name ?? "image"): Tensor {
  const { width: W, height: H, pixels } = img;
  try {
    if (!(W > 0 && H > 0) || pixels.length !== W * H) {
      throw new RangeError(`image ${W}×${H} has ${pixels.length} pixels`);
    }
    const px = rec.ctx.upload(pixels, [1, H, W], "u32", what);
    rec.releaseAfterSubmit(px);
    return fromRgba8(rec, px, { channels: 3 });
  } catch (e) {
    const msg = (e as Error).message;
    throw new Error(msg.includes(what) ? msg : `${what}: ${msg}`, { cause: e });
  }
}

/**
 * Records torchvision's `Resize(size)` (bilinear, antialiased, short side) + `CenterCrop(size)` + `ToTensor` +
 * `Normalize(0.5, 0.5)` of planar 0…255 pixels x [B, 3, H, W]: returns [B, 3, size, size] in [−1, 1]. (PIL rounds
 * the resized image to bytes before `ToTensor`; this keeps f32, a difference below 1/255.)
 */
export function preprocessImages(rec: Recorder, x: Tensor, size: number): Tensor {
  const [, C, H, W] = x.shape;
  if (x.shape.length !== 4 || C !== 3) {
    throw new TypeError(`preprocessImages: x ${fmtShape(x.shape)} is not [B, 3, H, W]`);
  }
  return resize(rec, x, {
    size: [size, size],
    ...centerCropBox(H, W, size),
    filter: "bilinear",
    antialias: true,
    channelAffine: { scale: [1 / 127.5, 1 / 127.5, 1 / 127.5], shift: [-1, -1, -1] },
  });
}

/**
 * The scheduler whose `addNoise` is DDPM's forward process on the pipeline's training schedule (DDIM's is the same
 * formula, as in diffusers; the pipeline's own sampler may be Euler, whose `addNoise` works in σ-space).
 */
export function ddpmNoiser(pipe: StableDiffusionPipeline): NoiseScheduler {
  return createScheduler({ ...pipe.schedulerConfig, _class_name: "DDIMScheduler" }, "pooled collection");
}

/** Collects pooled rows; owns the empty-prompt embeddings it caches (call `release`). */
export class PooledCollector {
  readonly hook: string;
  readonly timestep: number;
  readonly size: number;
  readonly seed: number;
  readonly keepImages: boolean;
  #embeddings = new Map<number, Tensor>();
  #empty: Tensor | null = null;
  #noiser: NoiseScheduler;

  private constructor(readonly pipe: StableDiffusionPipeline, opts: PooledOptions) {
    const o = { ...POOLED_DEFAULTS, ...opts };
    this.hook = o.hook.replace(/^unet\./, "");
    this.timestep = o.timestep;
    this.size = o.size;
    this.seed = o.seed;
    this.keepImages = opts.keepImages ?? true;
    this.#noiser = ddpmNoiser(pipe);
    const unet = pipe.unet;
    if (!unet.hookPoints.has(this.hook)) {
      const head = this.hook.split(".").slice(0, 2).join(".");
      const near = [...unet.hookPoints].filter((k) => k.startsWith(head)).slice(0, 4);
      throw new RangeError(
        `Unknown U-Net hook point "${o.hook}"${near.length ? ` (did you mean ${near.join(", ")}?)` : ""}`,
      );
    }
    const N = this.#noiser.config.num_train_timesteps;
    if (!Number.isInteger(this.timestep) || this.timestep < 0 || this.timestep >= N) {
      throw new RangeError(`pooled collection: timestep must be an integer in [0, ${N}), got ${this.timestep}`);
    }
    const f = pipe.vaeScaleFactor, down = 2 ** (unet.arch.down.length - 1);
    if (!Number.isInteger(this.size) || this.size < 1 || this.size % (f * down)) {
      throw new RangeError(
        `pooled collection: size ${this.size} must be a positive multiple of ${f * down} (VAE factor ${f} × ` +
          `U-Net downsampling ${down})`,
      );
    }
    if (!Number.isInteger(this.seed) || this.seed < 0) {
      throw new RangeError(`pooled collection: seed must be a non-negative integer, got ${this.seed}`);
    }
  }

  /** Validates the options against the pipeline and encodes the empty prompt. */
  static async create(pipe: StableDiffusionPipeline, opts: PooledOptions = {}): Promise<PooledCollector> {
    const c = new PooledCollector(pipe, opts);
    c.#empty = pipe.ctx.persist(await pipe.encodePrompts([""])); // kept across a caller's allocation scopes
    return c;
  }

  get ctx(): GpuContext {
    return this.pipe.ctx;
  }

  /** ᾱₜ of the noising timestep. */
  get alphaCumprod(): number {
    return this.#noiser.alphasCumprod[this.timestep];
  }

  /** Empty-prompt conditioning [B, tokens, D] (built once per batch size from one text-encoder run). */
  #embedding(rec: Recorder, B: number): Tensor {
    const e = this.#empty!;
    let t = this.#embeddings.get(B);
    if (!t) {
      t = this.ctx.persist(this.ctx.tensor([B, ...e.shape.slice(1)], "f32", "empty prompt"));
      const bytes = numel(e.shape) * 4;
      for (let b = 0; b < B; b++) rec.copy(e, { ...t, offset: t.offset + b * bytes }, bytes);
      this.#embeddings.set(B, t);
    }
    return t;
  }

  /**
   * Pooled rows of `images` (one U-Net batch), which are images `first … first + n − 1` of the collection: row
   * index (image, timestep, −1 (no CFG half), 0), `activations` [1, d].
   */
  async collect(images: readonly RgbaImage[], first: number): Promise<CollectedRows[]> {
    const B = images.length;
    if (B === 0) return [];
    const { ctx, pipe, size } = this;
    const unet = pipe.unet;
    const owned = new Set<Tensor>(); // freed on the way out, whatever happens
    try {
      // 1. pixels → [B, 3, size, size] in [−1, 1] (and, for the store, as RGBA8)
      let rec = ctx.recorder("pooled: preprocess");
      const pixels = ctx.tensor([B, 3, size, size], "f32", "pooled.pixels");
      owned.add(pixels);
      const per = 3 * size * size * 4;
      images.forEach((img, b) => {
        const raw = rgbaToPlanar(rec, img, img.name ?? `image ${first + b}`);
        const one = preprocessImages(rec, raw, size);
        rec.copy(one, { ...pixels, offset: pixels.offset + b * per }, per);
        rec.releaseAfterSubmit(raw, one);
      });
      const rgba = this.keepImages ? ctx.persist(toRgba8(rec, pixels)) : null;
      if (rgba) owned.add(rgba);
      await rec.submit();
      // 2. latents: posterior mode × scaling_factor (a pixel-space model takes the image itself)
      const x0 = pipe.vae ? await pipe.vae.encodeLatents(pixels) : pixels;
      owned.add(x0);
      // 3. x_t = √ᾱₜ·x₀ + √(1 − ᾱₜ)·ε; 4. one U-Net forward with the empty prompt, pooled at the hook
      rec = ctx.recorder("pooled: noise + U-Net");
      const eps = noiseFor(rec, x0.shape, first, this.seed);
      const xt = this.#noiser.addNoise(rec, x0, eps, this.timestep);
      const ts = ctx.upload(new Float32Array(B).fill(this.timestep), [B], "f32", "timesteps");
      [eps, xt, ts].forEach((t) => owned.add(t));
      const hooks = new Hooks();
      let pooled: Tensor | null = null;
      hooks.edit(this.hook, (r, x, site) => {
        if (pooled) throw new Error(`pooled collection: hook "${this.hook}" fired twice in one forward`);
        pooled = poolSpatial(r, x, site.layout, this.hook);
        owned.add(pooled);
      });
      const emb = this.#embedding(rec, B);
      const opts = { hooks, step: 0, timestep: this.timestep, cfg: false };
      owned.add(unet.forward(rec, { sample: xt, timesteps: ts, encoderHiddenStates: emb }, opts));
      await rec.submit();
      if (!pooled) throw new Error(`pooled collection: hook "${this.hook}" did not fire`);
      const p: Tensor = pooled;
      const d = p.shape[1];
      const values = await ctx.readF32(p);
      const px = rgba ? await ctx.read(rgba) as Uint32Array : null;
      const hw = size * size;
      return images.map((_, b) => ({
        prompt: first + b,
        d,
        activations: values.slice(b * d, (b + 1) * d),
        index: Int32Array.of(first + b, this.timestep, -1, 0),
        image: px ? { pixels: px.slice(b * hw, (b + 1) * hw), width: size, height: size } : undefined,
        grid: [1, 1],
      }));
    } finally {
      ctx.release(...owned);
    }
  }

  /** Frees the cached embeddings. */
  release(): void {
    if (this.#empty) this.ctx.release(this.#empty);
    this.ctx.release(...this.#embeddings.values());
    this.#empty = null;
    this.#embeddings.clear();
  }
}

/** Records standard normal noise of `shape` [B, …] whose item b is seeded with `seed + first + b`. */
export function noiseFor(rec: Recorder, shape: readonly number[], first: number, seed: number): Tensor {
  const ctx = rec.ctx;
  const B = shape[0], item = shape.slice(1);
  const per = item.reduce((a, b) => a * b, 1) * 4;
  const eps = ctx.tensor(shape, "f32", "pooled.noise");
  for (let b = 0; b < B; b++) {
    const one = rec.alloc([1, ...item], "f32", "pooled.noise.item");
    fill(rec, one, { normal: [0, 1], seed: seed + first + b });
    rec.copy(one, { ...eps, offset: eps.offset + b * per }, per);
    rec.releaseAfterSubmit(one);
  }
  return eps;
}

/**
 * Records the spatial mean of a hook activation: [B, C, H, W] ("nchw") over H·W, [B, tokens, C] ("bnc") over the
 * tokens → [B, C]. The result outlives the U-Net's scope (the caller frees it).
 */
export function poolSpatial(rec: Recorder, x: Tensor, layout: "nchw" | "bnc", hook = "hook"): Tensor {
  const s = x.shape;
  if (s.length < 3) {
    throw new TypeError(`pooled collection: "${hook}" output ${fmtShape(s)} has no spatial axes to pool`);
  }
  const ctx = rec.ctx;
  if (layout === "nchw") {
    const [B, C] = s, hw = s.slice(2).reduce((a, b) => a * b, 1);
    const out = ctx.persist(ctx.tensor([B, C], "f32", `pooled:${hook}`));
    return mean(rec, reshape(x, [B, C, hw]), { axis: 2, out });
  }
  const B = s[0], C = s[s.length - 1], tokens = s.slice(1, -1).reduce((a, b) => a * b, 1);
  const out = ctx.persist(ctx.tensor([B, C], "f32", `pooled:${hook}`));
  return mean(rec, reshape(x, [B, tokens, C]), { axis: 1, out });
}
