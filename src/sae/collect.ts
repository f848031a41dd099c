/**
 * Activation collection for SAEs: generate images for a list of prompts and keep, at chosen denoising steps and
 * CFG half, one row per spatial position of a hook point's output (the `.delta` of a Transformer2DModel by default,
 * as the SAE papers analyse). Rows come back per prompt; `src/io/activation_store.ts` writes them as shards.
 * Runtime-agnostic.
 * @module
 */
import type { Half } from "../hooks/hooks.ts";
import { Hooks } from "../hooks/hooks.ts";
import { permute } from "../ops/permute.ts";
import type { StableDiffusionPipeline } from "../pipeline/stable_diffusion.ts";
import { reshape } from "../gpu/tensor.ts";

/** What to collect. */
export interface CollectOptions {
  /** Hook point (default `mid_block.attentions.0.delta`). */
  hook?: string;
  /** Step indices to keep (e.g. [0, 25, 49]). */
  atSteps: readonly number[];
  /** Sampling steps of each generation (default 50). */
  steps?: number;
  /** CFG half to keep (default "cond"). */
  half?: Half;
  guidance?: number;
  /** Seed of prompt i is `seed + i` (default 0). */
  seed?: number;
}

/** The rows of one prompt: `activations` [rows, d] and per row (prompt, step, half, position). */
export interface CollectedRows {
  prompt: number;
  d: number;
  activations: Float32Array;
  /** [rows, 4] as (prompt index, step, half: 0 uncond / 1 cond, spatial position). */
  index: Int32Array;
  /** The generated image (RGBA8, R in the low byte), for feature browsers; absent for non-RGB models. */
  image?: { pixels: Uint32Array; width: number; height: number };
  /** Spatial size [H, W] of the hook's activation map (rows' position q is row q / W, column q % W). */
  grid: [number, number];
}

/** Generates prompt `i` and returns its rows (positions × kept steps × kept halves). */
export async function collectPrompt(
  pipe: StableDiffusionPipeline,
  prompts: readonly string[],
  i: number,
  opts: CollectOptions,
): Promise<CollectedRows> {
  const hook = opts.hook ?? "mid_block.attentions.0.delta";
  const half = opts.half ?? "cond";
  const hooks = new Hooks();
  const cap = hooks.capture(hook, { steps: opts.atSteps, half });
  const ctx = pipe.ctx;
  const r = await pipe.generate({
    prompt: prompts[i],
    steps: opts.steps ?? 50,
    guidance: opts.guidance ?? 7.5,
    seed: (opts.seed ?? 0) + i,
    hooks,
  });
  const [, , H, W] = r.image.shape;
  const image = r.pixels ? { pixels: r.pixels.subarray(0, H * W), width: W, height: H } : undefined;
  ctx.release(...new Set([r.latents, r.image]));
  const parts: Float32Array[] = [], index: number[] = [];
  let d = 0;
  let grid: [number, number] = [1, 1];
  for (const rec of cap.records) {
    const t = rec.tensor; // [n, C, H, W] (or [n, tokens, C] for hooks inside a transformer block)
    const nchw = t.shape.length === 4;
    const [n, C] = nchw ? [t.shape[0], t.shape[1]] : [t.shape[0], t.shape[2]];
    const hw = nchw ? t.shape[2] * t.shape[3] : t.shape[1];
    d = C;
    grid = nchw ? [t.shape[2], t.shape[3]] : [1, hw];
    const r2 = ctx.recorder("collect");
    const rows = nchw ? permute(r2, reshape(t, [n, C, hw]), [0, 2, 1]) : t; // one row per position
    await r2.submit();
    parts.push(await ctx.readF32(rows));
    if (rows !== t) ctx.release(rows);
    const halves = half === "both" ? [0, 1] : [half === "cond" ? 1 : 0];
    for (let b = 0; b < n; b++) {
      const h = halves[Math.min(b * halves.length / n | 0, halves.length - 1)];
      for (let q = 0; q < hw; q++) index.push(i, rec.step, h, q);
    }
  }
  cap.release(ctx);
  const total = parts.reduce((a, p) => a + p.length, 0);
  const activations = new Float32Array(total);
  let at = 0;
  for (const p of parts) activations.set(p, at), at += p.length;
  return { prompt: i, d, activations, index: Int32Array.from(index), image, grid };
}
