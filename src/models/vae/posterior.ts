/**
 * The encoder's output distribution, diffusers' `DiagonalGaussianDistribution`: a per-element Gaussian whose
 * mean and log-variance are the two halves of `quant_conv`'s moments.
 * @module
 */
import src from "../../../kernels/gaussian_sample.wgsl" with { type: "text" };
import type { GpuContext } from "../../gpu/context.ts";
import { defineKernel } from "../../gpu/kernel.ts";
import type { Recorder } from "../../gpu/recorder.ts";
import { fmtShape, numel, type Tensor } from "../../gpu/tensor.ts";
import { grid1dFor } from "../../ops/_alloc.ts";
import { concatBackward } from "../../ops/concat.ts";
import { fill } from "../../ops/fill.ts";
import { clamp } from "../../ops/unary.ts";

const kernel = defineKernel("gaussian_sample.wgsl", src);
const WG = 256;

/** diffusers clamps the log-variance into this range before using it. */
export const LOGVAR_RANGE = [-30, 20] as const;

/** A diagonal Gaussian over latents [B, L, h, w]; owns its two tensors. */
export class DiagonalGaussianDistribution {
  constructor(readonly ctx: GpuContext, readonly mean: Tensor, readonly logvar: Tensor) {}

  /** The most likely latents: the mean (not a copy). */
  mode(): Tensor {
    return this.mean;
  }

  /**
   * Records one draw `mean + exp(logvar / 2) · ε` into a new tensor. ε ~ N(0, 1) comes from the counter-based
   * generator of kernels/fill.wgsl with `seed` (element i's value depends only on seed and i, so a draw is the
   * same on every device up to ~1e-6 and for every dispatch shape). `eps` receives ε when given.
   */
  sample(rec: Recorder, seed: number, opts: { eps?: Tensor } = {}): Tensor {
    const { mean, logvar } = this;
    const eps = opts.eps ?? rec.ctx.tensor(mean.shape, "f32", "vae.posterior.eps");
    if (opts.eps && numel(opts.eps.shape) !== numel(mean.shape)) {
      throw new TypeError(
        `DiagonalGaussianDistribution.sample: eps ${fmtShape(eps.shape)} is not ${fmtShape(mean.shape)}`,
      );
    }
    if (!opts.eps) rec.releaseAfterSubmit(eps);
    fill(rec, eps, { normal: [0, 1], seed });
    const out = rec.ctx.tensor(mean.shape, "f32", "vae.posterior.sample");
    const n = numel(mean.shape);
    const grid = grid1dFor(rec, n, WG);
    rec.dispatch(kernel, { read: { mean, logvar, eps }, write: { out }, params: { n, row: grid[0] }, grid });
    return out;
  }

  /** Frees the mean and log-variance. */
  release(): void {
    this.ctx.release(this.mean, this.logvar);
  }
}

/**
 * Records the split of moments [B, 2L, h, w] into mean [B, L, h, w] and log-variance clamped to
 * {@linkcode LOGVAR_RANGE}.
 */
export function splitMoments(rec: Recorder, moments: Tensor): { mean: Tensor; logvar: Tensor } {
  const [B, C2, h, w] = moments.shape;
  if (moments.shape.length !== 4 || C2 % 2) {
    throw new TypeError(`VAE posterior: moments ${fmtShape(moments.shape)} must be [B, 2·latent, h, w]`);
  }
  const shape = [B, C2 / 2, h, w];
  const mean = rec.ctx.tensor(shape, "f32", "vae.posterior.mean");
  const raw = rec.ctx.tensor(shape, "f32", "vae.posterior.raw_logvar");
  rec.releaseAfterSubmit(raw);
  concatBackward(rec, moments, { dxs: [mean, raw], axis: 1, accumulate: false });
  const logvar = clamp(rec, raw, { lo: LOGVAR_RANGE[0], hi: LOGVAR_RANGE[1], out: rec.ctx.tensor(shape) });
  return { mean, logvar };
}
