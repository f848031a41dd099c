/**
 * A VAE with seeded random weights, filled on the GPU (for benchmarks and model-sized tests: no checkpoint
 * needed). Norm weights are 1, biases 0, other weights N(0, 1/fan_in) so activations keep a sane scale.
 * @module
 */
import type { GpuContext } from "../../gpu/context.ts";
import { randomParams } from "../checkpoint.ts";
import { vaeArch, vaeParamShapes } from "./arch.ts";
import type { VAEConfig } from "./config.ts";
import { AutoencoderKL } from "./model.ts";

/** Builds the VAE of `config` with random weights from `seed`. */
export async function randomVAE(ctx: GpuContext, config: VAEConfig, seed = 0): Promise<AutoencoderKL> {
  const arch = vaeArch(config);
  return new AutoencoderKL(ctx, arch, await randomParams(ctx, vaeParamShapes(arch), seed));
}
