/**
 * The setup both full-size U-Net scripts share: the common flags (--size, --batch, --tokens, --iters), the SD v1.4
 * U-Net with seeded random weights, and random inputs filled on the GPU.
 * @module
 */
import { parseArgs, type ParseArgsConfig } from "node:util";
import { createContext, type GpuContext } from "../src/gpu/context.ts";
import type { Tensor } from "../src/gpu/tensor.ts";
import { parseUNetConfig } from "../src/models/unet/config.ts";
import { randomUNet } from "../src/models/unet/random.ts";
import type { UNet2DConditionModel } from "../src/models/unet/model.ts";
import type { WeightStorage } from "../src/models/checkpoint.ts";
import { fill } from "../src/ops/fill.ts";

/** What {@linkcode unetBench} sets up. */
export interface UNetBench<V> {
  /** All parsed flags (the common ones and the script's own). */
  values: V;
  /** Latent size, batch, text tokens, timed iterations. */
  S: number;
  B: number;
  T: number;
  iters: number;
  ctx: GpuContext;
  unet: UNet2DConditionModel;
  /** [B, 4, S, S], [B, T, 768] (both N(0, 1)) and [B] timesteps. */
  sample: Tensor;
  ehs: Tensor;
  ts: Tensor;
  /** Seconds the random weights took. */
  loadSeconds: number;
}

/**
 * Parses the common flags plus `options`, creates the context (printing the device), builds the U-Net with random
 * weights (`weights` storage) and the inputs at `timestep`.
 */
export async function unetBench<O extends NonNullable<ParseArgsConfig["options"]>>(
  options: O,
  timestep: number,
  weights: (values: Record<string, unknown>) => WeightStorage = () => "f32",
) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      size: { type: "string", default: "64" },
      batch: { type: "string", default: "2" },
      tokens: { type: "string", default: "77" },
      iters: { type: "string", default: "1" },
      ...options,
    },
  });
  const v = values as Record<string, unknown>;
  const S = Number(v.size), B = Number(v.batch), T = Number(v.tokens), iters = Number(v.iters);
  const sd14 = JSON.parse(
    await Deno.readTextFile(new URL("../../shared/fixtures/sd14/sd14-unet.json", import.meta.url)),
  );
  const ctx = await createContext();
  const info = ctx.adapter.info;
  console.log(`device: ${info.description || info.vendor} ${info.device}`);
  const t0 = performance.now();
  const unet = await randomUNet(ctx, parseUNetConfig(sd14.config), 0, weights(v));
  const loadSeconds = (performance.now() - t0) / 1000;
  const sample = ctx.tensor([B, 4, S, S]), ehs = ctx.tensor([B, T, 768]);
  const ts = ctx.upload(new Float32Array(B).fill(timestep), [B]);
  const rec = ctx.recorder("inputs");
  fill(rec, sample, { normal: [0, 1], seed: 1 });
  fill(rec, ehs, { normal: [0, 1], seed: 2 });
  await rec.submit();
  await ctx.sync();
  return { values, S, B, T, iters, ctx, unet, sample, ehs, ts, loadSeconds };
}
