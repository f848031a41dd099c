/**
 * A whole CLIP model (transformers' `CLIPModel`: text and vision towers with their projections) and the CLIP
 * score: the cosine of the normalised image and text embeddings, with CLIP's image preprocessing on the GPU.
 *
 * Preprocessing follows openai/CLIP (`Resize(224, BICUBIC)` + `CenterCrop(224)` on a PIL image, then
 * `Normalize(mean, std)`): Pillow's antialiased bicubic (Keys a = −0.5), in f32, without the 8-bit rounding Pillow
 * applies between its two passes on uint8 images (a difference of at most half a level, ~0.002). `centerCrop: false`
 * squashes the whole image to the square instead (some papers' choice). See docs/clip.md.
 * @module
 */
import type { GpuContext } from "../../gpu/context.ts";
import type { Recorder } from "../../gpu/recorder.ts";
import { fmtShape, type Tensor } from "../../gpu/tensor.ts";
import { Hooks } from "../../hooks/hooks.ts";
import type { HostIds } from "../../ops/embedding.ts";
import { centerCropBox, resize, type ResizeFilter } from "../../ops/resize.ts";
import type { ClipConfig } from "./config.ts";
import type { ClipForwardOptions, ClipTextModel, ClipTextOutput } from "./text.ts";
import type { ClipVisionModel, ClipVisionOutput } from "./vision.ts";

/** openai/CLIP's per-channel normalisation (RGB), in [0, 1] units. */
export const CLIP_MEAN: readonly number[] = [0.48145466, 0.4578275, 0.40821073];
export const CLIP_STD: readonly number[] = [0.26862954, 0.26130258, 0.27577711];

/** Options of {@linkcode clipPreprocess}. */
export interface ClipPreprocessOptions {
  /** Side of the square output (default 224, or the model's `image_size` in {@linkcode clipScore}). */
  size?: number;
  /** Resize the short side to `size` then crop the centre (true, default: openai/CLIP) or squash to the square. */
  centerCrop?: boolean;
  /** Default "bicubic" (openai/CLIP, transformers' `CLIPImageProcessor`). */
  filter?: ResizeFilter;
  /** Default true (Pillow always antialiases). */
  antialias?: boolean;
  /** Value range of the input images, mapped to [0, 1] before normalising: [0, 1] (default) or e.g. [-1, 1]. */
  range?: readonly [number, number];
  mean?: readonly number[];
  std?: readonly number[];
}

/**
 * Images [B, 3, H, W] (RGB, f32, values in `range`) → CLIP pixel values [B, 3, size, size]: resize (and crop), then
 * `(x − mean) / std`, in two dispatches.
 *
 * ```ts ignore
 * const px = clipPreprocess(rec, vaeImages, { range: [-1, 1] }); // a VAE decode [B, 3, 512, 512] → [B, 3, 224, 224]
 * ```
 */
export function clipPreprocess(rec: Recorder, images: Tensor, opts: ClipPreprocessOptions = {}): Tensor {
  if (images.shape.length !== 4) {
    throw new TypeError(`clipPreprocess: images ${fmtShape(images.shape)} must be [B, C, H, W]`);
  }
  const [, C, H, W] = images.shape;
  const size = opts.size ?? 224;
  const mean = opts.mean ?? CLIP_MEAN, std = opts.std ?? CLIP_STD;
  const [lo, hi] = opts.range ?? [0, 1];
  if (mean.length !== C || std.length !== C) {
    throw new TypeError(
      `clipPreprocess: images ${fmtShape(images.shape)} have ${C} channels; mean/std have ${mean.length}`,
    );
  }
  if (!(hi > lo)) throw new RangeError(`clipPreprocess: range [${lo}, ${hi}] is empty`);
  // ((x − lo) / (hi − lo) − mean) / std as one affine per channel
  const scale = std.map((s) => 1 / ((hi - lo) * s));
  const shift = std.map((s, c) => (-lo / (hi - lo) - mean[c]) / s);
  const box = (opts.centerCrop ?? true) ? centerCropBox(H, W, size) : {};
  return resize(rec, images, {
    size: [size, size],
    ...box,
    filter: opts.filter,
    antialias: opts.antialias,
    channelAffine: { scale, shift },
  });
}

/** Inputs of {@linkcode ClipModel.forward}: either tower or both. */
export interface ClipInputs {
  /** Token ids [B, T]. */
  inputIds?: HostIds;
  /** Preprocessed pixel values [B, 3, image_size, image_size]. */
  pixelValues?: Tensor;
}

/** Outputs of {@linkcode ClipModel.forward}, for the towers that ran. */
export interface ClipOutputs {
  text?: ClipTextOutput;
  vision?: ClipVisionOutput;
}

/** transformers' `CLIPModel` on the GPU: both towers (hook paths `clip.text_model.…`, `clip.vision_model.…`). */
export class ClipModel {
  /** Every hook point of both towers, without the prefix. */
  readonly hookPoints: ReadonlySet<string>;

  constructor(
    readonly ctx: GpuContext,
    readonly config: ClipConfig,
    readonly text: ClipTextModel,
    readonly vision: ClipVisionModel,
    /** `logit_scale` as stored (a log): logits = exp(logitScale) · cosine. */
    readonly logitScale: number,
  ) {
    if (text.hookPrefix !== vision.hookPrefix) {
      throw new TypeError(`ClipModel: towers have hook prefixes "${text.hookPrefix}" and "${vision.hookPrefix}"`);
    }
    this.hookPoints = new Set([...text.hookPoints, ...vision.hookPoints]);
  }

  /** Frees both towers' weights. */
  release(): void {
    this.text.release();
    this.vision.release();
  }

  /** Records the towers whose inputs are given; outputs and captures are the caller's. */
  forward(rec: Recorder, inputs: ClipInputs, opts: ClipForwardOptions = {}): ClipOutputs {
    const hooks = (opts.hooks ?? new Hooks()).scope(this.text.hookPrefix, false);
    hooks.validate(this.hookPoints, "CLIP model");
    const out: ClipOutputs = {};
    if (inputs.inputIds) out.text = this.text.run(rec, inputs.inputIds, hooks, opts);
    if (inputs.pixelValues) out.vision = this.vision.run(rec, inputs.pixelValues, hooks, opts);
    return out;
  }
}

/** Inputs of {@linkcode clipScore}. */
export interface ClipScoreInputs {
  /** Images [Bi, 3, H, W] (see {@linkcode ClipPreprocessOptions.range}), or pixel values with `preprocessed`. */
  images: Tensor;
  /** Token ids [Bt, T] of the prompts (CLIP's tokenizer, 77 long). */
  inputIds: HostIds;
}

/** Options of {@linkcode clipScore}. */
export interface ClipScoreOptions extends ClipPreprocessOptions {
  /** The images are pixel values already ([Bi, 3, image_size, image_size]): fed as they are. */
  preprocessed?: boolean;
  hooks?: Hooks;
}

/** What {@linkcode clipScore} returns (host arrays). */
export interface ClipScoreResult {
  /** [Bi, Bt] row-major: cosine(image i, prompt j) of the normalised embeddings. */
  cosine: Float32Array;
  shape: [images: number, prompts: number];
  /** Per pair i (when Bi = Bt): the usual CLIP score max(100 · cosine[i, i], 0) (torchmetrics' `CLIPScore`). */
  pairScores?: number[];
  /** [Bi, projection_dim] and [Bt, projection_dim], not normalised. */
  imageEmbeds: Float32Array;
  textEmbeds: Float32Array;
}

/** Cosines of every row of a [n, d] with every row of b [m, d], in float64: [n, m]. */
export function cosineMatrix(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  n: number,
  m: number,
  d: number,
): Float32Array {
  const norm = (x: ArrayLike<number>, r: number) => {
    let s = 0;
    for (let k = 0; k < d; k++) s += x[r * d + k] ** 2;
    return Math.sqrt(s);
  };
  const out = new Float32Array(n * m);
  for (let i = 0; i < n; i++) {
    const ni = norm(a, i);
    for (let j = 0; j < m; j++) {
      let dot = 0;
      for (let k = 0; k < d; k++) dot += a[i * d + k] * b[j * d + k];
      out[i * m + j] = dot / (ni * norm(b, j));
    }
  }
  return out;
}

/**
 * CLIP score: preprocesses the images on the GPU (unless `preprocessed`), runs both towers in one recording, reads
 * back the two projected embeddings and returns the cosine of every image with every prompt (before CLIP score's
 * ×100 and clamping at 0, which `pairScores` applies to the diagonal).
 *
 * ```ts ignore
 * const tok = tokenizer.tokenize(prompts);
 * const { pairScores } = await clipScore(clip, { images, inputIds: { data: tok.inputIds, shape: tok.shape } });
 * ```
 */
export async function clipScore(
  model: ClipModel,
  inputs: ClipScoreInputs,
  opts: ClipScoreOptions = {},
): Promise<ClipScoreResult> {
  const ctx = model.ctx;
  const rec = ctx.recorder("clip score");
  const px = opts.preprocessed
    ? inputs.images
    : clipPreprocess(rec, inputs.images, { size: model.config.vision.imageSize, ...opts });
  const out = model.forward(rec, { inputIds: inputs.inputIds, pixelValues: px }, { hooks: opts.hooks });
  const text = out.text!, vision = out.vision!;
  rec.releaseAfterSubmit(text.lastHiddenState, text.pooledOutput, vision.lastHiddenState, vision.pooledOutput);
  if (px !== inputs.images) rec.releaseAfterSubmit(px);
  let textEmbeds: Float32Array, imageEmbeds: Float32Array;
  try {
    await rec.submit();
    textEmbeds = await ctx.readF32(text.textEmbeds!);
    imageEmbeds = await ctx.readF32(vision.imageEmbeds!);
  } finally {
    ctx.release(text.textEmbeds, vision.imageEmbeds);
  }
  const bi = inputs.images.shape[0], bt = inputs.inputIds.shape[0], d = model.config.projectionDim;
  const cosine = cosineMatrix(imageEmbeds, textEmbeds, bi, bt, d);
  const pairScores = bi === bt
    ? Array.from({ length: bi }, (_, i) => Math.max(100 * cosine[i * bt + i], 0))
    : undefined;
  return { cosine, shape: [bi, bt], pairScores, imageEmbeds, textEmbeds };
}
