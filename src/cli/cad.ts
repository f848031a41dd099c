/**
 * `diffscope attribute | erase | amplify`: CAD concept attribution with a resumable run directory, its report, the
 * faithfulness check, and ablation edits as patch files with before/after images. Deno edge code.
 * @module
 */
import type { GpuContext } from "../gpu/context.ts";
import { readF32Checkpoint, writeCheckpoint } from "../io/checkpoint.ts";
import { openScores, saveAblationPatch, saveScores, writeCadReport } from "../io/cad_files.ts";
import { writePng } from "../io/png.ts";
import { progressBar } from "../io/progress.ts";
import {
  ablationMask,
  type AblationMode,
  ablationPatch,
  type AblationPatchEntry,
  applyPatches,
} from "../cad/ablate.ts";
import { Attribution, type AttributionMode, CAD_DEFAULT_PARAMS } from "../cad/attribute.ts";
import { attributionScores, type ScoreMeta } from "../cad/scores.ts";
import { summarizeScores } from "../cad/report.ts";
import { faithfulness } from "../cad/validate.ts";
import type { StableDiffusionPipeline } from "../pipeline/stable_diffusion.ts";
import { loadPipelineCli } from "./generate.ts";

/** Arguments shared by the CAD commands. */
export interface CadArgs {
  concept: string;
  model: string;
  mode: AttributionMode;
  timesteps: number;
  samples: number;
  params: string;
  seed: number;
  out: string;
  validate: number;
  variant?: string;
  offline?: boolean;
  quiet?: boolean;
}

/** Where a run keeps its resumable state. */
const STATE = "attribution-state.safetensors";

/** Computes (or resumes) the attribution, saves scores + report; returns the score file's path. */
export async function attributeCommand(ctx: GpuContext, a: CadArgs, pipe?: StableDiffusionPipeline): Promise<string> {
  const own = !pipe;
  pipe ??= await loadPipelineCli(ctx, a);
  await Deno.mkdir(a.out, { recursive: true });
  const attr = new Attribution(pipe, {
    concept: a.concept,
    mode: a.mode,
    timesteps: a.timesteps,
    samples: a.samples,
    params: a.params,
    seed: a.seed,
    keepLatents: a.validate > 0,
  });
  const statePath = `${a.out}/${STATE}`;
  const identity = JSON.stringify({
    concept: a.concept,
    mode: a.mode,
    T: a.timesteps,
    samples: a.samples,
    params: attr.names,
    seed: a.seed,
    model: a.model,
  });
  try {
    const resumed = await readF32Checkpoint(statePath).catch(() => null);
    if (resumed && resumed.meta.identity === identity && a.validate === 0) {
      attr.restore(resumed.tensors, Number(resumed.meta.done));
      if (!a.quiet) console.error(`resuming ${statePath}: ${attr.done}/${attr.total} gradient calls done`);
    }
    let stop = false;
    const onSignal = () => (stop = true);
    Deno.addSignalListener("SIGINT", onSignal);
    const bar = progressBar(`attribute ${a.mode} "${a.concept}"`, attr.total, { unit: "calls", silent: a.quiet });
    bar.tick(attr.done);
    const save = async () => {
      const grads = new Map<string, Float32Array>();
      for (const [n, g] of attr.grads) grads.set(n, await ctx.readF32(g));
      await writeCheckpoint(statePath, grads, { identity, done: String(attr.done) });
    };
    let lastSave = performance.now();
    try {
      while (await attr.next()) {
        bar.tick();
        if (stop) break;
        if (performance.now() - lastSave > 60_000 || attr.done % attr.T === 0) {
          await save(), lastSave = performance.now();
        }
      }
    } finally {
      Deno.removeSignalListener("SIGINT", onSignal);
    }
    if (stop) {
      await save();
      throw new Error(`interrupted after ${attr.done}/${attr.total} gradient calls; run the same command to resume`);
    }
    bar.done();
    // S = w ⊙ ∂J/∂w, per parameter
    const scores = new Map<string, ReturnType<typeof attributionScores>>();
    const rec = ctx.recorder("scores");
    for (const [n, g] of attr.grads) scores.set(n, attributionScores(rec, pipe.unet.params.get(n)!, g));
    await rec.submit();
    attr.ddim.setTimesteps(a.timesteps);
    const meta: ScoreMeta = {
      concept: a.concept,
      mode: a.mode,
      timesteps: [...attr.ddim.timesteps],
      samples: a.samples,
      seed: a.seed,
      model: a.model,
    };
    const scorePath = `${a.out}/scores.safetensors`;
    await saveScores(ctx, scorePath, scores, meta);
    await using file = await openScores(scorePath);
    const summary = await summarizeScores(file.entries(), { meta });
    let extra = "";
    if (a.validate > 0) {
      if (a.mode !== "erase") throw new Error("--validate measures the erase score: use --mode erase");
      const host = new Map<string, Float32Array>();
      for (const [n, s] of scores) host.set(n, await ctx.readF32(s));
      const vbar = progressBar("faithfulness", a.validate, { unit: "sets", silent: a.quiet });
      const f = await faithfulness(pipe, attr.ddim, await attr.conditioning(), attr.points, host, {
        sets: a.validate,
        seed: a.seed,
        onSet: () => vbar.tick(),
      });
      vbar.done();
      await Deno.writeTextFile(`${a.out}/faithfulness.json`, JSON.stringify(f, null, 1));
      extra = `; faithfulness over ${a.validate} random ablations: Pearson r = ${f.pearson.toFixed(3)} ` +
        `(${f.pearsonFixedBase.toFixed(3)} with ε(z, c_base) held, the stop-gradient score's own first order)`;
    }
    await writeCadReport(a.out, summary);
    ctx.release(...scores.values());
    await Deno.remove(statePath).catch(() => {});
    return `wrote ${scorePath} and ${a.out}/index.html${extra}`;
  } finally {
    attr.release();
    if (own) pipe.release();
  }
}

/** Arguments of erase / amplify. */
export interface EditArgs extends CadArgs {
  ratio: number;
  ablate: AblationMode;
  flatten: boolean;
  /** A directory with scores.safetensors from `attribute`. */
  scores?: string;
  /** Prompts of the before/after images. */
  prompts: string[];
  steps: number;
}

/** Ablates by the scores, writes the patch and before/after images. */
export async function editCommand(ctx: GpuContext, a: EditArgs): Promise<string> {
  const pipe = await loadPipelineCli(ctx, a);
  try {
    await Deno.mkdir(a.out, { recursive: true });
    const scoreDir = a.scores ?? `${a.out}/attribution`;
    if (!a.scores) await attributeCommand(ctx, { ...a, out: scoreDir, validate: 0 }, pipe);
    await using file = await openScores(`${scoreDir}/scores.safetensors`);
    if (file.meta.mode !== a.mode) {
      throw new Error(
        `${scoreDir}/scores.safetensors holds ${file.meta.mode} scores; ${
          a.mode === "erase" ? "erase" : "amplify"
        } needs ${a.mode}`,
      );
    }
    const entries: AblationPatchEntry[] = [];
    for (const name of file.names) {
      const s = await file.read(name);
      const param = pipe.unet.params.get(name);
      if (!param) throw new Error(`scores name "${name}", which this model does not have`);
      const S = ctx.upload(s.data, s.shape);
      const rec = ctx.recorder("ablation");
      const mask = ablationMask(rec, S, { ratio: a.ratio, mode: a.ablate, flatten: a.flatten });
      await rec.submit();
      entries.push(await ablationPatch(ctx, name, param, mask));
      ctx.release(S, mask.mask);
    }
    const zeroed = entries.reduce((n, e) => n + e.indices.length, 0);
    await saveAblationPatch(`${a.out}/patch.safetensors`, {
      entries,
      meta: { concept: a.concept, mode: a.mode, ratio: String(a.ratio), ablate: a.ablate, flatten: String(a.flatten) },
    });
    // before/after with the same seeds
    const shots = async (tag: string) => {
      for (let i = 0; i < a.prompts.length; i++) {
        const r = await pipe.generate({ prompt: a.prompts[i], steps: a.steps, seed: a.seed + i });
        const [, , H, W] = r.image.shape;
        if (r.pixels) await writePng(`${a.out}/${tag}-${i}.png`, r.pixels, W, H);
        ctx.release(...new Set([r.latents, r.image]));
      }
    };
    await shots("before");
    await patchModel(pipe, entries, false);
    await shots("after");
    await patchModel(pipe, entries, true);
    return `zeroed ${zeroed} weights in ${
      entries.filter((e) => e.indices.length).length
    } tensors; wrote ${a.out}/patch.safetensors and before/after images`;
  } finally {
    pipe.release();
  }
}

/** Applies (or with `restore`, removes) a patch on the loaded U-Net. */
export async function patchModel(
  pipe: StableDiffusionPipeline,
  entries: AblationPatchEntry[],
  restore: boolean,
): Promise<void> {
  const rec = pipe.ctx.recorder(restore ? "unpatch" : "patch");
  applyPatches(rec, pipe.unet.params, entries, { restore });
  await rec.submit();
}

export { CAD_DEFAULT_PARAMS };
