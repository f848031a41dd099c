/**
 * A CLIP text encoder with seeded random weights, filled on the GPU (for benchmarks and model-sized tests: no
 * checkpoint needed). Norm weights are 1, biases 0, embeddings N(0, 0.02²) (transformers' init), other weights
 * N(0, 1/fan_in) so activations keep a sane scale.
 * @module
 */
import type { GpuContext } from "../../gpu/context.ts";
import type { Tensor } from "../../gpu/tensor.ts";
import { rowShardSizes } from "../../ops/embedding.ts";
import { fill } from "../../ops/fill.ts";
import { clipTextParamShapes } from "./arch.ts";
import type { ClipTextConfig } from "./config.ts";
import { ClipTextModel } from "./text.ts";

/** Options of {@linkcode randomTextEncoder}. */
export interface RandomTextEncoderOptions {
  seed?: number;
  /** Also make `text_projection` (default false, as SD's text encoder). */
  projection?: boolean;
  hookPrefix?: string;
}

/** Builds the text encoder of `config` with random weights. */
export async function randomTextEncoder(
  ctx: GpuContext,
  config: ClipTextConfig,
  opts: RandomTextEncoderOptions = {},
): Promise<ClipTextModel> {
  const seed = opts.seed ?? 0;
  const params = new Map<string, Tensor>();
  const tokenEmbedding: Tensor[] = [];
  let i = 0;
  const rec = ctx.recorder("random weights");
  const random = (t: Tensor, std: number) => fill(rec, t, { normal: [0, std], seed: (seed * 7919 + i++) >>> 0 });
  try {
    for (const [name, shape] of clipTextParamShapes(config, { projection: opts.projection })) {
      if (name === "text_model.embeddings.token_embedding.weight") {
        const [v, d] = shape;
        for (const [k, rows] of rowShardSizes(v, d * 4, ctx.limits.maxStorageBufferBindingSize).entries()) {
          const t = ctx.tensor([rows, d], "f32", `${name}[${k}]`);
          tokenEmbedding.push(t);
          random(t, 0.02);
        }
        continue;
      }
      const t = ctx.tensor(shape, "f32", name);
      params.set(name, t);
      if (name.endsWith(".bias")) fill(rec, t, { value: 0 });
      else if (/norm[^.]*\.weight$/.test(name)) fill(rec, t, { value: 1 });
      else if (name.includes("embedding")) random(t, 0.02);
      else random(t, 1 / Math.sqrt(shape[1]));
    }
    await rec.submit();
    await ctx.sync();
  } catch (e) {
    ctx.release(...params.values(), ...tokenEmbedding);
    throw e;
  }
  return new ClipTextModel(ctx, config, params, tokenEmbedding, { hookPrefix: opts.hookPrefix });
}
