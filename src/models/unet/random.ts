/**
 * A U-Net with seeded random weights, filled on the GPU (for benchmarks and model-sized tests: no checkpoint
 * needed). Norm weights are 1, biases 0, other weights N(0, 1/fan_in) so activations keep a sane scale.
 * @module
 */
import type { GpuContext } from "../../gpu/context.ts";
import { randomParams, type WeightStorage } from "../checkpoint.ts";
import { unetArch, unetParamShapes } from "./arch.ts";
import type { UNetConfig } from "./config.ts";
import { UNet2DConditionModel } from "./model.ts";

/** Builds the U-Net of `config` with random weights from `seed` (with `weights` "f16", its matrices rounded to f16). */
export async function randomUNet(
  ctx: GpuContext,
  config: UNetConfig,
  seed = 0,
  weights: WeightStorage = "f32",
): Promise<UNet2DConditionModel> {
  const arch = unetArch(config);
  return new UNet2DConditionModel(ctx, arch, await randomParams(ctx, unetParamShapes(arch), seed, weights));
}
