/**
 * `diffscope generate`: text-to-image from a diffusers folder or a Hugging Face repo id, with a progress bar,
 * optional initial latents from a safetensors file, per-step latents, and PNG output. Deno edge code.
 * @module
 */
import type { GpuContext } from "../gpu/context.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { type Half, Hooks } from "../hooks/hooks.ts";
import { readMask } from "../io/mask.ts";
import { loadSaeFile } from "../io/sae_files.ts";
import { type Quadrant, QUADRANTS, saeHalf, saeHook, type SteerFeature, steerSae, stepRange } from "../sae/steer.ts";
import { resolveModel } from "../io/hub.ts";
import { writePng } from "../io/png.ts";
import { type ProgressBar, progressBar } from "../io/progress.ts";
import { openSafetensorsFile, writeSafetensorsFile } from "../io/safetensors_file.ts";
import { loadPipeline, type SCHEDULER_NAMES, type StableDiffusionPipeline } from "../pipeline/stable_diffusion.ts";
import type { TensorToWrite } from "../safetensors/writer.ts";
import { loadAblationPatch } from "../io/cad_files.ts";
import { applyPatches } from "../cad/ablate.ts";
import type { WeightStorage } from "../models/checkpoint.ts";

/** Arguments of {@linkcode generateCommand}. */
export interface GenerateArgs {
  model: string;
  prompt: string;
  negative?: string;
  steps: number;
  guidance: number;
  scheduler?: keyof typeof SCHEDULER_NAMES;
  seed: number;
  batch: number;
  /** `FILE` or `FILE:TENSOR` (the file's only tensor when no name is given). */
  latents?: string;
  saveSteps?: string;
  out: string;
  variant?: string;
  /** How weight matrices are stored on the GPU ("f16" halves their memory). */
  weights?: WeightStorage;
  offline?: boolean;
  quiet?: boolean;
  hooks?: Hooks;
  /** An ablation patch (from erase/amplify) to apply after loading. */
  patch?: string;
  /** Steering with SAE features (`--sae`). */
  sae?: SaeSteerArgs;
}

/** `generate --sae FILE --feature ID --strength S [--region R] [--window a-b]`: see {@linkcode steerSae}. */
export interface SaeSteerArgs {
  /** The SAE file (saveSaeFile's layout). */
  file: string;
  /** Hook point; default the file's config "hook", else `mid_block.attentions.0.delta`. */
  hook?: string;
  /** CFG half edited (default "cond", or "both" when guidance ≤ 1; cond/uncond without CFG is an error). */
  half?: Half;
  features: {
    id: number;
    strength: number;
    /** A quadrant or a mask PNG's path (white or opaque = inside); none: global. */
    region?: Quadrant | string;
    /** Step indices [a, b) (clipped to the run's steps); default every step. */
    window?: [number, number];
  }[];
}

/**
 * Loads the SAE and mask images of `s` and registers the steering edit on `hooks`; returns what to free after
 * sampling.
 */
export async function addSaeSteering(
  ctx: GpuContext,
  hooks: Hooks,
  s: SaeSteerArgs,
  run: { steps: number; guidance: number },
): Promise<{ hook: string; release: () => void }> {
  const half = saeHalf(s.half, run.guidance); // before loading: a wrong half fails fast
  const { sae, extra } = await loadSaeFile(ctx, s.file);
  const masks: Tensor[] = [];
  try {
    const features: SteerFeature[] = [];
    for (const f of s.features) {
      let region: SteerFeature["region"];
      if (f.region !== undefined && (QUADRANTS as readonly string[]).includes(f.region)) region = f.region as Quadrant;
      else if (f.region !== undefined) {
        region = await readMask(ctx, f.region);
        masks.push(region);
      }
      let steps: number[] | undefined;
      if (f.window) {
        const [a, b] = f.window;
        if (!(Number.isInteger(a) && Number.isInteger(b) && 0 <= a && a < b && a < run.steps)) {
          throw new RangeError(`--window ${a}-${b} of feature ${f.id} selects none of the ${run.steps} steps`);
        }
        steps = stepRange(a, Math.min(b, run.steps));
      }
      features.push({ id: f.id, strength: f.strength, region, steps });
    }
    const hook = saeHook(s.hook, extra);
    const steering = steerSae(hooks, sae, { hook, features, half });
    return {
      hook,
      release: () => {
        steering.release();
        sae.release();
        ctx.release(...masks);
      },
    };
  } catch (e) {
    sae.release();
    ctx.release(...masks);
    throw e;
  }
}

/** Reads `FILE[:TENSOR]`. */
export async function readLatentsArg(spec: string): Promise<{ data: Float32Array; shape: readonly number[] }> {
  // tensor names may contain '/' (input/latents) and paths may contain ':': a whole existing path wins
  let file = spec, name: string | undefined;
  const cut = spec.lastIndexOf(":");
  if (cut > 0 && !(await Deno.stat(spec).then(() => true, () => false))) {
    file = spec.slice(0, cut);
    name = spec.slice(cut + 1);
  }
  await using st = await openSafetensorsFile(file);
  if (!name) {
    if (st.names.length !== 1) {
      throw new Error(`${file} holds ${st.names.length} tensors (${st.names.join(", ")}); name one as FILE:TENSOR`);
    }
    name = st.names[0];
  }
  if (!st.has(name)) throw new Error(`${file} has no tensor "${name}" (it has ${st.names.join(", ")})`);
  return { data: await st.readF32(name), shape: st.info(name).shape };
}

/** Output paths: `out.png` for one image, `out-<i>.png` for a batch. */
function outPaths(out: string, n: number): string[] {
  if (n === 1) return [out];
  const dot = out.toLowerCase().endsWith(".png") ? out.length - 4 : out.length;
  return Array.from({ length: n }, (_, i) => `${out.slice(0, dot)}-${i}${out.slice(dot)}`);
}

/** Loads the pipeline of `model` (folder or repo id) with a progress bar. */
export async function loadPipelineCli(
  ctx: GpuContext,
  a: Pick<GenerateArgs, "model" | "variant" | "weights" | "offline" | "quiet" | "scheduler">,
): Promise<StableDiffusionPipeline> {
  const files = await resolveModel(a.model, { variant: a.variant, offline: a.offline, quiet: a.quiet });
  const bars = new Map<string, ProgressBar>();
  return await loadPipeline(ctx, files, {
    variant: a.variant,
    weights: a.weights,
    scheduler: a.scheduler,
    onProgress: (c, done, total) => {
      let bar = bars.get(c);
      if (!bar) bars.set(c, bar = progressBar(`loading ${c}`, total, { unit: "tensors", silent: a.quiet }));
      if (done === total) bar.done();
      else bar.tick();
    },
  });
}

/** Runs the command; returns a summary line. */
export async function generateCommand(ctx: GpuContext, a: GenerateArgs): Promise<string> {
  if (a.sae) saeHalf(a.sae.half, a.guidance); // refused before the model loads
  const pipe = await loadPipelineCli(ctx, a);
  let steer: { hook: string; release: () => void } | undefined;
  try {
    if (a.patch) await applyPatchFile(pipe, a.patch);
    const hooks = a.sae ? a.hooks ?? new Hooks() : a.hooks;
    if (a.sae) steer = await addSaeSteering(ctx, hooks!, a.sae, a);
    const init = a.latents ? await readLatentsArg(a.latents) : undefined;
    const batch = init ? init.shape[0] : a.batch;
    const f = pipe.vaeScaleFactor;
    const size = init ? { height: init.shape[2] * f, width: init.shape[3] * f } : {};
    let bar: ProgressBar | undefined;
    const result = await pipe.generate({
      prompt: new Array(batch).fill(a.prompt),
      negativePrompt: a.negative ?? "",
      steps: a.steps,
      guidance: a.guidance,
      seed: a.seed,
      latents: init?.data,
      ...size,
      hooks,
      saveSteps: !!a.saveSteps,
      onStep: ({ steps }) => {
        bar ??= progressBar("sampling", steps, { unit: "steps", silent: a.quiet });
        bar.tick();
      },
    });
    bar?.done();
    const [B, C, H, W] = result.image.shape;
    if (!result.pixels) throw new Error(`cannot write ${a.out}: the model's images have ${C} channels, not RGB`);
    const paths = outPaths(a.out, B);
    for (let b = 0; b < B; b++) await writePng(paths[b], result.pixels.subarray(b * H * W, (b + 1) * H * W), W, H);
    if (a.saveSteps) {
      const tensors: Record<string, TensorToWrite> = {};
      result.stepLatents!.forEach((d, i) =>
        tensors[`step/${i}/latents`] = { dtype: "F32", shape: result.latents.shape, data: d }
      );
      tensors["timesteps"] = {
        dtype: "F32",
        shape: [result.timesteps.length],
        data: Float32Array.from(result.timesteps),
      };
      await writeSafetensorsFile(a.saveSteps, tensors, { prompt: a.prompt, producer: "diffscope generate" });
    }
    ctx.release(result.latents, result.image);
    const steered = steer ? `, steered at ${steer.hook}` : "";
    return `wrote ${paths.join(", ")} (${W}×${H}, ${result.timesteps.length} steps${steered})`;
  } finally {
    steer?.release();
    pipe.release();
  }
}

/** Loads an ablation patch and applies it to the pipeline's U-Net; returns the number of weights zeroed. */
export async function applyPatchFile(pipe: StableDiffusionPipeline, path: string): Promise<number> {
  const patch = await loadAblationPatch(path);
  const rec = pipe.ctx.recorder("patch");
  applyPatches(rec, pipe.unet.params, patch.entries);
  await rec.submit();
  return patch.entries.reduce((n, e) => n + e.indices.length, 0);
}
