/**
 * `diffscope sae layout`: generate a prompt, read the SAE code of a hook's Δ at an early step, and write the
 * per-position top-feature map (layout.json, a colour-coded layout.png), the areas of the features, their IoU
 * against a mask when one is given, and the generated image (image.png) to compare with. Deno edge code.
 * @module
 */
import type { GpuContext } from "../gpu/context.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { writeFileAtomic } from "../io/files.ts";
import { readMask } from "../io/mask.ts";
import { writePng } from "../io/png.ts";
import { loadSaeFile } from "../io/sae_files.ts";
import { predictLayout } from "../sae/layout.ts";
import type { Sae } from "../sae/model.ts";
import { saeHook } from "../sae/steer.ts";
import { loadPipelineCli } from "./generate.ts";

/** Arguments of {@linkcode saeLayoutCommand}. */
export interface SaeLayoutArgs {
  model: string;
  prompt: string;
  /** The SAE file. */
  sae: string;
  /** Hook point; default the SAE's config "hook", else `mid_block.attentions.0.delta`. */
  hook?: string;
  /** The step whose Δ is read (0: before the first step finishes). */
  step: number;
  steps: number;
  seed: number;
  guidance: number;
  /** Concept set for the IoU (default: the mask's most frequent top feature). */
  features?: number[];
  /** A mask PNG (white or opaque = the object); resized to the hook's grid on the GPU. */
  mask?: string;
  /** Output folder. */
  out: string;
  variant?: string;
  offline?: boolean;
  quiet?: boolean;
}

/** A colour per feature id (−1: black): golden-angle hues, so neighbouring ids differ. RGBA8, R in the low byte. */
export function featureColour(id: number): number {
  if (id < 0) return 0xff000000;
  const h = (id * 137.508) % 360, s = 0.65 + 0.35 * ((id >> 3) % 2), v = 0.75 + 0.25 * ((id >> 4) % 2);
  const f = (n: number) => {
    const k = (n + h / 60) % 6;
    return Math.round(255 * (v - v * s * Math.max(0, Math.min(k, 4 - k, 1))));
  };
  return (f(5) | (f(3) << 8) | (f(1) << 16) | (0xff << 24)) >>> 0;
}

/** The top-feature map as an image, each position a `scale`×`scale` block of its feature's colour. */
export function layoutImage(top: ArrayLike<number>, grid: readonly [number, number], scale: number): Uint32Array {
  const [H, W] = grid;
  const out = new Uint32Array(H * W * scale * scale);
  for (let y = 0; y < H * scale; y++) {
    for (let x = 0; x < W * scale; x++) {
      out[y * W * scale + x] = featureColour(top[Math.floor(y / scale) * W + Math.floor(x / scale)]);
    }
  }
  return out;
}

/** Runs the command; returns a summary line. */
export async function saeLayoutCommand(ctx: GpuContext, a: SaeLayoutArgs): Promise<string> {
  const pipe = await loadPipelineCli(ctx, a);
  let mask: Tensor | undefined, sae: Sae | undefined;
  try {
    const loaded = await loadSaeFile(ctx, a.sae);
    sae = loaded.sae;
    if (a.mask) mask = await readMask(ctx, a.mask);
    const hook = saeHook(a.hook, loaded.extra);
    const r = await predictLayout(pipe, sae, {
      prompt: a.prompt,
      hook,
      step: a.step,
      steps: a.steps,
      seed: a.seed,
      guidance: a.guidance,
      features: a.features,
      mask,
    });
    const [H, W] = r.grid;
    const hw = H * W;
    const top = r.top.subarray(0, hw); // one prompt: one image
    await Deno.mkdir(a.out, { recursive: true });
    const rows = Array.from({ length: H }, (_, i) => Array.from(top.subarray(i * W, (i + 1) * W)));
    const json = {
      prompt: a.prompt,
      model: a.model,
      sae: a.sae,
      hook,
      step: a.step,
      steps: a.steps,
      seed: a.seed,
      guidance: a.guidance,
      grid: [H, W],
      top: rows,
      area: r.area[0].map((e) => ({ ...e, fraction: e.positions / hw })),
      ...(a.features
        ? {
          features: a.features.map((id) => {
            const positions = r.area[0].find((e) => e.id === id)?.positions ?? 0;
            return { id, positions, fraction: positions / hw };
          }),
        }
        : {}),
      ...(r.iou ? { mask: a.mask, iou: r.iou[0] } : {}),
    };
    // indented, but each list of numbers (a map row, the grid) on one line
    const text = JSON.stringify(json, null, 2).replace(
      /\[\s+(-?\d+(?:,\s+-?\d+)*)\s+\]/g,
      (_, xs: string) => `[${xs.split(/,\s+/).join(", ")}]`,
    );
    await writeFileAtomic(`${a.out}/layout.json`, new TextEncoder().encode(text + "\n"));
    const scale = Math.max(1, Math.floor(256 / Math.max(H, W)));
    await writePng(`${a.out}/layout.png`, layoutImage(top, [H, W], scale), W * scale, H * scale);
    if (r.image) await writePng(`${a.out}/image.png`, r.image.pixels, r.image.width, r.image.height);
    const iou = r.iou ? `, IoU ${r.iou[0].iou.toFixed(3)} for [${r.iou[0].features.join(",")}]` : "";
    return `wrote ${a.out}/layout.json, layout.png${r.image ? ", image.png" : ""} (${H}×${W} at ${hook}, step ` +
      `${a.step}, ${r.area[0].length} distinct top features${iou})`;
  } finally {
    ctx.release(mask);
    sae?.release();
    pipe.release();
  }
}
