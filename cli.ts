#!/usr/bin/env -S deno run -A
/**
 * The diffscope command line. Thin: parse arguments, call `src/`, print.
 *
 *   deno run -A cli.ts info           adapter, limits, features and a kernel self-check
 * @module
 */
import { parseArgs } from "parse-args";
import { createContext, NoAdapterError } from "./src/gpu/context.ts";
import { deviceInfo } from "./src/info.ts";
import { forwardCommand } from "./src/cli/forward.ts";
import { generateCommand, type SaeSteerArgs } from "./src/cli/generate.ts";
import { SCHEDULER_NAMES } from "./src/pipeline/stable_diffusion.ts";
import { attributeCommand, CAD_DEFAULT_PARAMS, type CadArgs, editCommand } from "./src/cli/cad.ts";
import type { AblationMode } from "./src/cad/ablate.ts";
import { collectCommand, collectPooledCommand } from "./src/cli/sae.ts";
import { saeLayoutCommand } from "./src/cli/sae_layout.ts";
import { explainCommand, parseFeatureSelection } from "./src/cli/sae_explain.ts";
import { trainCommand } from "./src/cli/sae_train.ts";
import { flags, UsageError, withGpu } from "./src/cli/args.ts";
import type { WeightStorage } from "./src/models/checkpoint.ts";

const USAGE = `diffscope — interpretability of diffusion models on WebGPU

usage: deno run -A cli.ts <command> [options]

commands:
  info      show the WebGPU adapter, its limits and features, and run the kernel self-check
            --json   print the report as JSON
  forward   run the U-Net once and write its output and chosen activations
            --model DIR --inputs IN.safetensors --out OUT.safetensors [--capture PATH ...] [--variant fp16]
            [--weights f32|f16] (f16: weight matrices stored as f16, half the memory; not for their gradients)
            IN holds sample [B,C,H,W], timesteps [B] (int or float) and encoder_hidden_states [B,T,D]
            (or the same under input/); OUT gets sample and act/<PATH> for each capture
            --backward W [--grads PATTERN]: also the gradients of sum(output · W) (W: a tensor of IN shaped like
            the output) as grad/<param> for the parameters PATTERN selects (glob, * crosses dots; default all)
            and grad_input/sample, grad_input/encoder_hidden_states
  generate  text-to-image
            --model DIR_OR_REPO --prompt TEXT [--negative TEXT] [--steps 50] [--guidance 7.5]
            [--scheduler pndm|ddim|euler|dpm++2m] [--seed 0] [--batch 1] [--latents FILE[:TENSOR]]
            [--save-steps FILE.safetensors] [--out out.png] [--variant fp16] [--weights f32|f16] [--offline]
            [--patch PATCH.safetensors] (an erase/amplify edit, applied after loading)
            [--sae SAE.safetensors --feature ID --strength S [--region top-left|top-right|bottom-left|
            bottom-right|global|MASK.png] [--window A-B|all] ...] steers with SAE features on the Δ of
            [--sae-hook PATH] (default the SAE's config "hook", else mid_block.attentions.0.delta), editing
            [--sae-half cond|uncond|both] (default cond). --feature repeats; the i-th --strength, --region and
            --window go with the i-th --feature, or one of each applies to all (--strength is required;
            no --region: global; no --window: every step; A-B is the step indices [A, B))
            DIR_OR_REPO is a diffusers folder or a Hugging Face repo id (looked up in the HF cache first)
  attribute CAD concept attribution: which U-Net parameters draw a concept (S = w ⊙ ∂J/∂w)
            --concept TEXT [--model DIR_OR_REPO (default CompVis/stable-diffusion-v1-4)] [--mode erase|amplify]
            [--timesteps 50] [--samples 1] [--params "${CAD_DEFAULT_PARAMS}"] [--seed 0] [--validate N]
            --out REPORT_DIR   (scores.safetensors, index.html, attribution_mass.svg, summary.json;
            interrupt with Ctrl-C and run again to resume)
  erase     CAD-Erase: zero the weights with the largest positive erase scores
  amplify   CAD-Amplify: the same with the amplify (denoising-loss) scores
            --concept TEXT [--ratio 0.001] [--ablate positive|negative|both] [--flatten] [--scores REPORT_DIR]
            [--prompt TEXT ...] [--steps 25] plus attribute's options; --out DIR gets patch.safetensors and
            before-i.png / after-i.png generated with the same seeds
  sae collect  activations of a hook point over a prompt file (one row per spatial position), resumable
            --model DIR_OR_REPO --prompts FILE (one per line) --out DIR [--hook mid_block.attentions.0.delta]
            [--at-steps 0,25,49] [--steps 50] [--half cond|uncond|both] [--guidance 7.5] [--seed 0]
            [--shard-prompts 1]   (DIR gets shard-*.safetensors: activations [rows,d], index [rows,4] =
            prompt, step, half, position; and manifest.json; rerun the same command to resume)
            --pooled --images DIR (PNG files, name order) [--hook mid_block] [--timestep 25] [--size 256]
            [--seed 0] [--batch 4] [--shard-prompts 64]: Revelio's features instead, one row per image = the
            spatial mean of the hook's output for the image resized and centre-cropped to SIZE, VAE-encoded
            (mode), noised at DDPM timestep T (noise seed SEED + i) and run once through the U-Net with the
            empty prompt; index rows = image, timestep, -1, 0
  sae train    a TopK SAE on the GPU (SDLens' method: AuxK, decoder renormalisation, Adam) from shuffled batches
            --data STORE_DIR|FILE.safetensors[:TENSOR] (a store, or one [N,d] tensor) --out SAE.safetensors
            [--preset sdlens|revelio] [--n-latents 4·d (revelio 64·d)] [--k 20 (revelio 32)] [--batch 4096]
            [--steps N | --epochs 1] [--lr 1e-4] [--k-aux 256 (at most n)] [--dead-steps ⌊1e7/batch⌋] [--seed 0]
            [--at-step S[,S…]] [--half cond|uncond] (store rows of these steps / this half only: one SAE per step)
            [--metrics-every 100] [--checkpoint-every 1000] [--resume] [--quiet]   (metrics go to stdout and
            OUT.metrics.jsonl; checkpoints with the full training state to OUT.ckpt/, removed once OUT is
            written; Ctrl-C or a kill leaves the latest: rerun with --resume to continue exactly)
  sae explain  feature browser of an SAE over a store: frequency, top images (by mean activation) with heat maps
            --sae SAE.safetensors --data STORE --out DIR [--top 8] [--at-step S] [--batch-rows N (clamped to
            what one GPU buffer holds)] [--rank code|dense] (rank top images and draw heat maps by the TopK code,
            or by ReLU of the dense pre-activation as Revelio does: use dense for --pooled stores)
            [--features top-by-frequency:128|all|3,17,40] (which features the page shows; features.json has all)
            [--masks DIR] object masks prompt-NNNNN.<label>.png (white = object): a feature whose map, min-max
            normalised, upsampled and binarised at 0.1, has IoU > 0.5 with a mask takes its label
            [--names FILE] JSON {"<feature>": "<name>"}   (DIR gets index.html, data.js, features.json, maps/,
            images/; open index.html from disk)
  sae layout   layout prediction: the top SAE feature of each position of a hook's Δ at an early step
            --model DIR_OR_REPO --prompt TEXT --sae SAE.safetensors --out DIR [--hook PATH (default the SAE's
            config "hook", else mid_block.attentions.0.delta)] [--step 0] [--steps 50] [--seed 0] [--guidance 7.5]
            [--features 12,40] [--mask MASK.png]   (DIR gets layout.json: the [H,W] top-feature map (-1: nothing
            fires), each feature's area and, with a mask (white = object), the IoU of the positions whose top
            feature is in --features (default: the mask's most frequent one); layout.png; image.png)
`;

async function info(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { json: { type: "boolean", default: false } }, strict: true });
  const ctx = await createContext();
  const r = await deviceInfo(ctx);
  if (values.json) {
    console.log(JSON.stringify(r, null, 2));
  } else {
    const a = r.adapter;
    console.log(
      `adapter   ${a.description || a.device || "(unnamed)"}  vendor=${a.vendor}${
        a.isFallbackAdapter ? "  (software fallback)" : ""
      }`,
    );
    console.log(`f16       ${r.f16 ? "yes (shader-f16)" : "no"}`);
    console.log(`features  ${r.features.join(", ")}`);
    console.log("limits");
    for (const [k, v] of Object.entries(r.limits)) console.log(`  ${k.padEnd(36)} ${v.toLocaleString("en-US")}`);
    console.log("kernel self-check (relative L2 error vs CPU reference)");
    for (const c of r.selfCheck) {
      console.log(`  ${c.ok ? "ok  " : "FAIL"} ${c.name.padEnd(48)} ${c.error.toExponential(2)} (tol ${c.tolerance})`);
    }
  }
  ctx.destroy();
  return r.selfCheck.every((c) => c.ok) ? 0 : 1;
}

/** `--weights f32|f16` (default f32). */
function weightStorage(v: string | undefined): WeightStorage {
  if (v === undefined || v === "f32" || v === "f16") return v ?? "f32";
  throw new UsageError(`--weights must be f32 or f16, got "${v}"`);
}

async function forward(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      model: { type: "string" },
      inputs: { type: "string" },
      out: { type: "string" },
      capture: { type: "string", multiple: true, default: [] },
      variant: { type: "string" },
      weights: { type: "string" },
      quiet: { type: "boolean", default: false },
      backward: { type: "string" },
      grads: { type: "string" },
    },
    strict: true,
  });
  if (values.grads && !values.backward) throw new UsageError("--grads needs --backward");
  const weights = weightStorage(values.weights);
  for (const k of ["model", "inputs", "out"] as const) {
    if (!values[k]) throw new UsageError(`--${k} is required`);
  }
  return await withGpu((ctx) =>
    forwardCommand(ctx, {
      model: values.model!,
      inputs: values.inputs!,
      out: values.out!,
      capture: values.capture!,
      variant: values.variant,
      weights,
      quiet: values.quiet,
      backward: values.backward,
      grads: values.grads,
    })
  );
}

async function generate(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      model: { type: "string" },
      prompt: { type: "string" },
      negative: { type: "string", default: "" },
      steps: { type: "string", default: "50" },
      guidance: { type: "string", default: "7.5" },
      scheduler: { type: "string" },
      seed: { type: "string", default: "0" },
      batch: { type: "string", default: "1" },
      latents: { type: "string" },
      "save-steps": { type: "string" },
      out: { type: "string", default: "out.png" },
      variant: { type: "string" },
      weights: { type: "string" },
      offline: { type: "boolean", default: false },
      quiet: { type: "boolean", default: false },
      patch: { type: "string" },
      sae: { type: "string" },
      feature: { type: "string", multiple: true, default: [] },
      strength: { type: "string", multiple: true, default: [] },
      region: { type: "string", multiple: true, default: [] },
      window: { type: "string", multiple: true, default: [] },
      "sae-hook": { type: "string" },
      "sae-half": { type: "string" },
    },
    strict: true,
  });
  const { int, num } = flags(values);
  if (!values.model) throw new UsageError("--model is required");
  const sae = saeSteerArgs(values);
  if (values.prompt === undefined) throw new UsageError("--prompt is required");
  const weights = weightStorage(values.weights);
  const guidance = num("guidance");
  const scheduler = values.scheduler as keyof typeof SCHEDULER_NAMES | undefined;
  if (scheduler && !(scheduler in SCHEDULER_NAMES)) {
    throw new UsageError(`--scheduler must be one of ${Object.keys(SCHEDULER_NAMES).join(", ")}, got "${scheduler}"`);
  }
  return await withGpu((ctx) =>
    generateCommand(ctx, {
      model: values.model,
      prompt: values.prompt,
      negative: values.negative,
      steps: int("steps", 1),
      guidance,
      scheduler,
      seed: int("seed", 0),
      batch: int("batch", 1),
      latents: values.latents,
      saveSteps: values["save-steps"],
      out: values.out!,
      variant: values.variant,
      weights,
      offline: values.offline,
      quiet: values.quiet,
      patch: values.patch,
      sae,
    })
  );
}

/** `generate`'s --sae options: the i-th --strength/--region/--window pairs with the i-th --feature, or one serves all. */
function saeSteerArgs(values: {
  sae?: string;
  feature: string[];
  strength: string[];
  region: string[];
  window: string[];
  "sae-hook"?: string;
  "sae-half"?: string;
}): SaeSteerArgs | undefined {
  const { feature, strength, region, window } = values;
  if (!values.sae) {
    if (
      feature.length || strength.length || region.length || window.length || values["sae-hook"] ||
      values["sae-half"]
    ) {
      throw new UsageError("--feature, --strength, --region, --window, --sae-hook and --sae-half need --sae");
    }
    return undefined;
  }
  if (!feature.length) throw new UsageError("--sae needs at least one --feature");
  const nth = (k: string, list: string[], i: number) => {
    if (list.length > 1 && list.length !== feature.length) {
      throw new UsageError(`${list.length} --${k} for ${feature.length} --feature: give one, or one per feature`);
    }
    return list.length === 0 ? undefined : list[list.length === 1 ? 0 : i];
  };
  if (!strength.length) throw new UsageError("--sae needs --strength (one, or one per --feature)");
  const half = values["sae-half"];
  if (half !== undefined && !["cond", "uncond", "both"].includes(half)) {
    throw new UsageError(`--sae-half must be cond, uncond or both, got "${half}"`);
  }
  return {
    file: values.sae,
    hook: values["sae-hook"],
    half: half as SaeSteerArgs["half"],
    features: feature.map((f, i) => {
      const id = Number(f);
      if (!Number.isInteger(id) || id < 0) throw new UsageError(`--feature must be a latent id ≥ 0, got "${f}"`);
      const s = Number(nth("strength", strength, i));
      if (!Number.isFinite(s)) {
        throw new UsageError(`--strength must be a number, got "${nth("strength", strength, i)}"`);
      }
      const r = nth("region", region, i);
      const w = nth("window", window, i);
      let win: [number, number] | undefined;
      if (w !== undefined && w !== "all") {
        const m = /^(\d+)-(\d+)$/.exec(w);
        if (!m || Number(m[1]) >= Number(m[2])) {
          throw new UsageError(`--window must be A-B with A < B (steps [A, B)), got "${w}"`);
        }
        win = [Number(m[1]), Number(m[2])];
      }
      return { id, strength: s, region: r === "global" || r === "none" ? undefined : r, window: win };
    }),
  };
}

const CAD_OPTIONS = {
  concept: { type: "string" },
  model: { type: "string", default: "CompVis/stable-diffusion-v1-4" },
  mode: { type: "string" },
  timesteps: { type: "string", default: "50" },
  samples: { type: "string", default: "1" },
  params: { type: "string", default: CAD_DEFAULT_PARAMS },
  seed: { type: "string", default: "0" },
  validate: { type: "string", default: "0" },
  out: { type: "string" },
  variant: { type: "string" },
  offline: { type: "boolean", default: false },
  quiet: { type: "boolean", default: false },
  ratio: { type: "string", default: "0.001" },
  ablate: { type: "string", default: "positive" },
  flatten: { type: "boolean", default: false },
  scores: { type: "string" },
  prompt: { type: "string", multiple: true },
  steps: { type: "string", default: "25" },
} as const;

function cadArgs(args: string[], cmd: string): CadArgs & { values: Record<string, unknown> } {
  const { values } = parseArgs({ args, options: CAD_OPTIONS, strict: true });
  if (!values.concept) throw new UsageError("--concept is required");
  if (!values.out) throw new UsageError("--out is required");
  const mode = values.mode ?? (cmd === "amplify" ? "amplify" : "erase");
  if (mode !== "erase" && mode !== "amplify") throw new UsageError(`--mode must be erase or amplify, got "${mode}"`);
  const { int } = flags(values);
  return {
    values,
    concept: values.concept,
    model: values.model,
    mode,
    timesteps: int("timesteps", 1),
    samples: int("samples", 1),
    params: values.params,
    seed: int("seed", 0),
    validate: int("validate", 0),
    out: values.out,
    variant: values.variant,
    offline: values.offline,
    quiet: values.quiet,
  };
}

async function attribute(args: string[]): Promise<number> {
  const a = cadArgs(args, "attribute");
  return await withGpu((ctx) => attributeCommand(ctx, a));
}

function edit(cmd: "erase" | "amplify") {
  return async (args: string[]): Promise<number> => {
    const a = cadArgs(args, cmd);
    if (a.values.mode && a.values.mode !== cmd) throw new UsageError(`${cmd} uses --mode ${cmd}`);
    const ratio = Number(a.values.ratio);
    if (!(ratio >= 0 && ratio <= 1)) throw new UsageError(`--ratio must be in [0, 1], got "${a.values.ratio}"`);
    const ablate = a.values.ablate as AblationMode;
    if (!["positive", "negative", "both"].includes(ablate)) {
      throw new UsageError(`--ablate must be positive, negative or both`);
    }
    const steps = Number(a.values.steps);
    return await withGpu((ctx) =>
      editCommand(ctx, {
        ...a,
        mode: cmd,
        ratio,
        ablate,
        flatten: a.values.flatten as boolean,
        scores: a.values.scores as string | undefined,
        prompts: (a.values.prompt as string[] | undefined) ?? [`a photo of ${a.concept}`],
        steps,
      })
    );
  };
}

async function sae(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  const run = SAE_COMMANDS[sub];
  if (!run) {
    throw new UsageError(`unknown subcommand "${sub ?? ""}" (available: ${Object.keys(SAE_COMMANDS).join(", ")})`);
  }
  return await run(rest);
}

async function saeCollect(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      model: { type: "string" },
      prompts: { type: "string" },
      out: { type: "string" },
      hook: { type: "string" },
      "at-steps": { type: "string" },
      steps: { type: "string" },
      half: { type: "string" },
      guidance: { type: "string" },
      seed: { type: "string", default: "0" },
      "shard-prompts": { type: "string" },
      pooled: { type: "boolean", default: false },
      images: { type: "string" },
      timestep: { type: "string" },
      size: { type: "string" },
      batch: { type: "string" },
      variant: { type: "string" },
      offline: { type: "boolean", default: false },
      quiet: { type: "boolean", default: false },
    },
    strict: true,
  });
  // each mode refuses the other's flags rather than ignoring them
  const [mine, theirs] = values.pooled
    ? [{ timestep: "25", size: "256", batch: "4" }, ["prompts", "at-steps", "steps", "half", "guidance"]]
    : [{ "at-steps": "0,25,49", steps: "50", half: "cond", guidance: "7.5" }, ["images", "timestep", "size", "batch"]];
  const stray = theirs.filter((k) => values[k as keyof typeof values] !== undefined);
  if (stray.length) {
    throw new UsageError(
      `${stray.map((k) => `--${k}`).join(", ")} ${stray.length === 1 ? "is" : "are"} ` +
        (values.pooled ? "for prompt mode, not --pooled" : "for --pooled only"),
    );
  }
  const all: Record<string, string | boolean | undefined> = { ...mine };
  for (const [k, v] of Object.entries(values)) if (v !== undefined) all[k] = v as string | boolean;
  if (values.pooled) return await saeCollectPooled(all);
  Object.assign(values, all);
  flags(values).require("model", "prompts", "out");
  const half = values.half as "cond" | "uncond" | "both";
  if (!["cond", "uncond", "both"].includes(half)) throw new UsageError(`--half must be cond, uncond or both`);
  const { int, num, optInt } = flags(values);
  return await withGpu((ctx) =>
    collectCommand(ctx, {
      model: values.model!,
      promptsFile: values.prompts!,
      hook: values.hook ?? "mid_block.attentions.0.delta",
      atSteps: values["at-steps"]!.split(",").map(Number),
      steps: int("steps", 1),
      half,
      guidance: num("guidance"),
      seed: int("seed", 0),
      out: values.out!,
      shardPrompts: optInt("shard-prompts", 1) ?? 1,
      variant: values.variant,
      offline: values.offline,
      quiet: values.quiet,
    })
  );
}

/** `sae collect --pooled`: Revelio's one mean-pooled vector per image of a folder. */
async function saeCollectPooled(values: Record<string, string | boolean | undefined>): Promise<number> {
  for (const k of ["model", "images", "out"] as const) {
    if (!values[k]) throw new UsageError(`--${k} is required with --pooled`);
  }
  const { int, optInt } = flags(values);
  const batch = int("batch", 1);
  return await withGpu((ctx) =>
    collectPooledCommand(ctx, {
      model: values.model as string,
      imageDir: values.images as string,
      hook: (values.hook as string | undefined) ?? "mid_block",
      timestep: int("timestep"),
      size: int("size"),
      seed: int("seed"),
      out: values.out as string,
      batch,
      shardImages: optInt("shard-prompts", 1) ?? 64,
      variant: values.variant as string | undefined,
      offline: values.offline as boolean,
      quiet: values.quiet as boolean,
    })
  );
}

async function saeTrain(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      data: { type: "string" },
      out: { type: "string" },
      preset: { type: "string", default: "sdlens" },
      "n-latents": { type: "string" },
      k: { type: "string" },
      batch: { type: "string" },
      steps: { type: "string" },
      epochs: { type: "string" },
      lr: { type: "string" },
      "k-aux": { type: "string" },
      "dead-steps": { type: "string" },
      seed: { type: "string" },
      "at-step": { type: "string" },
      half: { type: "string" },
      "metrics-every": { type: "string", default: "100" },
      "checkpoint-every": { type: "string", default: "1000" },
      resume: { type: "boolean", default: false },
      quiet: { type: "boolean", default: false },
    },
    strict: true,
  });
  flags(values).require("data", "out");
  const preset = values.preset as "sdlens" | "revelio";
  if (!["sdlens", "revelio"].includes(preset)) throw new UsageError(`--preset must be sdlens or revelio`);
  const half = values.half as "cond" | "uncond" | undefined;
  if (half !== undefined && !["cond", "uncond"].includes(half)) throw new UsageError(`--half must be cond or uncond`);
  const { optInt: int, optNum } = flags(values);
  if (values.steps !== undefined && values.epochs !== undefined) throw new UsageError("give --steps or --epochs");
  const lr = optNum("lr");
  if (lr !== undefined && !(lr > 0)) throw new UsageError(`--lr must be a positive number, got "${values.lr}"`);
  const atSteps = (values["at-step"] as string | undefined)?.split(",").map((x) => {
    const v = Number(x);
    if (!Number.isInteger(v) || v < 0) throw new UsageError(`--at-step takes step indices, got "${values["at-step"]}"`);
    return v;
  });
  return await withGpu((ctx) =>
    trainCommand(ctx, {
      data: values.data!,
      out: values.out!,
      preset,
      nLatents: int("n-latents", 1),
      k: int("k", 1),
      batch: int("batch", 1),
      steps: int("steps", 0),
      epochs: int("epochs", 1),
      lr,
      kAux: int("k-aux", 0),
      deadSteps: int("dead-steps", 0),
      seed: int("seed", 0),
      atSteps,
      half,
      metricsEvery: int("metrics-every", 0)!,
      checkpointEvery: int("checkpoint-every", 0)!,
      resume: values.resume,
      quiet: values.quiet,
    })
  );
}

async function saeExplain(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      sae: { type: "string" },
      data: { type: "string" },
      out: { type: "string" },
      top: { type: "string", default: "8" },
      features: { type: "string", default: "top-by-frequency:128" },
      "at-step": { type: "string" },
      masks: { type: "string" },
      names: { type: "string" },
      "batch-rows": { type: "string" },
      rank: { type: "string", default: "code" },
      quiet: { type: "boolean", default: false },
    },
    strict: true,
  });
  flags(values).require("sae", "data", "out");
  const { optInt: int, oneOf } = flags(values);
  let features;
  try {
    features = parseFeatureSelection(values.features!);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  return await withGpu((ctx) =>
    explainCommand(ctx, {
      sae: values.sae!,
      data: values.data!,
      out: values.out!,
      top: int("top", 1),
      features,
      atStep: int("at-step"),
      masks: values.masks,
      names: values.names,
      batchRows: int("batch-rows", 1),
      rank: oneOf("rank", ["code", "dense"] as const),
      quiet: values.quiet,
    })
  );
}

async function saeLayout(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      model: { type: "string" },
      prompt: { type: "string" },
      sae: { type: "string" },
      hook: { type: "string" },
      step: { type: "string", default: "0" },
      steps: { type: "string", default: "50" },
      seed: { type: "string", default: "0" },
      guidance: { type: "string", default: "7.5" },
      features: { type: "string" },
      mask: { type: "string" },
      out: { type: "string" },
      variant: { type: "string" },
      offline: { type: "boolean", default: false },
      quiet: { type: "boolean", default: false },
    },
    strict: true,
  });
  flags(values).require("model", "sae", "out");
  if (values.prompt === undefined) throw new UsageError("--prompt is required");
  const { int, num } = flags(values);
  const guidance = num("guidance");
  const features = values.features?.split(",").map((f: string) => {
    const id = Number(f);
    if (!Number.isInteger(id) || id < 0) throw new UsageError(`--features must be latent ids ≥ 0, got "${f}"`);
    return id;
  });
  const step = int("step", 0), steps = int("steps", 1);
  if (step >= steps) throw new UsageError(`--step ${step} is not one of the ${steps} sampling steps`);
  return await withGpu((ctx) =>
    saeLayoutCommand(ctx, {
      model: values.model!,
      prompt: values.prompt,
      sae: values.sae!,
      hook: values.hook,
      step,
      steps,
      seed: int("seed", 0),
      guidance,
      features,
      mask: values.mask,
      out: values.out!,
      variant: values.variant,
      offline: values.offline,
      quiet: values.quiet,
    })
  );
}

const SAE_COMMANDS: Record<string, (args: string[]) => Promise<number>> = {
  collect: saeCollect,
  train: saeTrain,
  layout: saeLayout,
  explain: saeExplain,
};

const COMMANDS: Record<string, (args: string[]) => Promise<number>> = {
  info,
  forward,
  generate,
  attribute,
  erase: edit("erase"),
  amplify: edit("amplify"),
  sae,
};

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === "-h" || cmd === "--help" || cmd === "help") {
    console.log(USAGE);
    return cmd ? 0 : 2;
  }
  const run = COMMANDS[cmd];
  if (!run) {
    console.error(`unknown command "${cmd}"\n\n${USAGE}`);
    return 2;
  }
  try {
    return await run(rest);
  } catch (e) {
    if (e instanceof NoAdapterError) {
      console.error(`diffscope: ${e.message}`);
      return 3;
    }
    if (e instanceof UsageError || (e as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) {
      console.error(`diffscope ${cmd}: ${(e as Error).message}\n\n${USAGE}`);
      return 2;
    }
    // A user sees the message (which names the file, tensor or shape at fault); DIFFSCOPE_DEBUG=1 adds the stack.
    if (Deno.env.get("DIFFSCOPE_DEBUG")) throw e;
    console.error(`diffscope ${cmd}: ${(e as Error).message ?? e}`);
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
