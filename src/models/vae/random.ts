/**
 * A VAE with seeded random weights, filled on the GPU (for benchmarks and model-sized tests: no checkpoint
 * needed). Norm weights are 1, biases 0, other weights N(0, 1/fan_in) so activations keep a sane scale.
 * @module
 */
import type { GpuContext } from "../../gpu/context.ts";
import type { Tensor } from "../../gpu/tensor.ts";
import { fill } from "../../ops/fill.ts";
import { vaeArch, vaeParamShapes } from "./arch.ts";
import type { VAEConfig } from "./config.ts";
import { AutoencoderKL } from "./model.ts";

/** Builds the VAE of `config` with random weights from `seed`. */
export async function randomVAE(ctx: GpuContext, config: VAEConfig, seed = 0): Promise<AutoencoderKL> {
  const arch = vaeArch(config);
  const params = new Map<string, Tensor>();
  let i = 0;
  try {
    const rec = ctx.recorder("random VAE weights");
    for (const [name, shape] of vaeParamShapes(arch)) {
      const t = ctx.tensor(shape, "f32", name);
      params.set(name, t);
      if (name.endsWith(".bias")) fill(rec, t, { value: 0 });
      else if (/norm[^.]*\.weight$/.test(name)) fill(rec, t, { value: 1 });
      else {
        const fanIn = shape.slice(1).reduce((a, b) => a * b, 1);
        fill(rec, t, { normal: [0, 1 / Math.sqrt(fanIn)], seed: (seed * 7919 + i++) >>> 0 });
      }
    }
    await rec.submit();
  } catch (e) {
    for (const t of params.values()) ctx.release(t);
    throw e;
  }
  await ctx.sync();
  return new AutoencoderKL(ctx, arch, params);
}
