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
import { generateCommand } from "./src/cli/generate.ts";
import { SCHEDULER_NAMES } from "./src/pipeline/stable_diffusion.ts";
import { attributeCommand, CAD_DEFAULT_PARAMS, type CadArgs, editCommand } from "./src/cli/cad.ts";
import type { AblationMode } from "./src/cad/ablate.ts";
import { collectCommand } from "./src/cli/sae.ts";

const USAGE = `diffscope — interpretability of diffusion models on WebGPU

usage: deno run -A cli.ts <command> [options]

commands:
  info      show the WebGPU adapter, its limits and features, and run the kernel self-check
            --json   print the report as JSON
  forward   run the U-Net once and write its output and chosen activations
            --model DIR --inputs IN.safetensors --out OUT.safetensors [--capture PATH ...] [--variant fp16]
            IN holds sample [B,C,H,W], timesteps [B] (int or float) and encoder_hidden_states [B,T,D]
            (or the same under input/); OUT gets sample and act/<PATH> for each capture
            --backward W [--grads PATTERN]: also the gradients of sum(output · W) (W: a tensor of IN shaped like
            the output) as grad/<param> for the parameters PATTERN selects (glob, * crosses dots; default all)
            and grad_input/sample, grad_input/encoder_hidden_states
  generate  text-to-image
            --model DIR_OR_REPO --prompt TEXT [--negative TEXT] [--steps 50] [--guidance 7.5]
            [--scheduler pndm|ddim|euler|dpm++2m] [--seed 0] [--batch 1] [--latents FILE[:TENSOR]]
            [--save-steps FILE.safetensors] [--out out.png] [--variant fp16] [--offline]
            [--patch PATCH.safetensors] (an erase/amplify edit, applied after loading)
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

async function forward(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      model: { type: "string" },
      inputs: { type: "string" },
      out: { type: "string" },
      capture: { type: "string", multiple: true, default: [] },
      variant: { type: "string" },
      quiet: { type: "boolean", default: false },
      backward: { type: "string" },
      grads: { type: "string" },
    },
    strict: true,
  });
  if (values.grads && !values.backward) throw new UsageError("--grads needs --backward");
  for (const k of ["model", "inputs", "out"] as const) {
    if (!values[k]) throw new UsageError(`--${k} is required`);
  }
  const ctx = await createContext();
  try {
    console.log(
      await forwardCommand(ctx, {
        model: values.model!,
        inputs: values.inputs!,
        out: values.out!,
        capture: values.capture!,
        variant: values.variant,
        quiet: values.quiet,
        backward: values.backward,
        grads: values.grads,
      }),
    );
  } finally {
    ctx.destroy();
  }
  return 0;
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
      offline: { type: "boolean", default: false },
      quiet: { type: "boolean", default: false },
      patch: { type: "string" },
    },
    strict: true,
  });
  if (!values.model) throw new UsageError("--model is required");
  if (values.prompt === undefined) throw new UsageError("--prompt is required");
  const int = (k: "steps" | "seed" | "batch", min: number) => {
    const v = Number(values[k]);
    if (!Number.isInteger(v) || v < min) throw new UsageError(`--${k} must be an integer ≥ ${min}, got "${values[k]}"`);
    return v;
  };
  const guidance = Number(values.guidance);
  if (!Number.isFinite(guidance)) throw new UsageError(`--guidance must be a number, got "${values.guidance}"`);
  const scheduler = values.scheduler as keyof typeof SCHEDULER_NAMES | undefined;
  if (scheduler && !(scheduler in SCHEDULER_NAMES)) {
    throw new UsageError(`--scheduler must be one of ${Object.keys(SCHEDULER_NAMES).join(", ")}, got "${scheduler}"`);
  }
  const ctx = await createContext();
  try {
    console.log(
      await generateCommand(ctx, {
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
        offline: values.offline,
        quiet: values.quiet,
        patch: values.patch,
      }),
    );
  } finally {
    ctx.destroy();
  }
  return 0;
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
  const int = (k: "timesteps" | "samples" | "seed" | "validate", min: number) => {
    const v = Number(values[k]);
    if (!Number.isInteger(v) || v < min) throw new UsageError(`--${k} must be an integer ≥ ${min}, got "${values[k]}"`);
    return v;
  };
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
  const ctx = await createContext();
  try {
    console.log(await attributeCommand(ctx, a));
  } finally {
    ctx.destroy();
  }
  return 0;
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
    const ctx = await createContext();
    try {
      console.log(
        await editCommand(ctx, {
          ...a,
          mode: cmd,
          ratio,
          ablate,
          flatten: a.values.flatten as boolean,
          scores: a.values.scores as string | undefined,
          prompts: (a.values.prompt as string[] | undefined) ?? [`a photo of ${a.concept}`],
          steps,
        }),
      );
    } finally {
      ctx.destroy();
    }
    return 0;
  };
}

async function sae(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  const run = SAE_COMMANDS[sub];
  if (!run) {
    throw new UsageError(`sae: unknown subcommand "${sub ?? ""}" (available: ${Object.keys(SAE_COMMANDS).join(", ")})`);
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
      hook: { type: "string", default: "mid_block.attentions.0.delta" },
      "at-steps": { type: "string", default: "0,25,49" },
      steps: { type: "string", default: "50" },
      half: { type: "string", default: "cond" },
      guidance: { type: "string", default: "7.5" },
      seed: { type: "string", default: "0" },
      "shard-prompts": { type: "string", default: "1" },
      variant: { type: "string" },
      offline: { type: "boolean", default: false },
      quiet: { type: "boolean", default: false },
    },
    strict: true,
  });
  for (const k of ["model", "prompts", "out"] as const) if (!values[k]) throw new UsageError(`--${k} is required`);
  const half = values.half as "cond" | "uncond" | "both";
  if (!["cond", "uncond", "both"].includes(half)) throw new UsageError(`--half must be cond, uncond or both`);
  const num = (k: "steps" | "seed" | "shard-prompts" | "guidance") => {
    const v = Number(values[k]);
    if (!Number.isFinite(v)) throw new UsageError(`--${k} must be a number, got "${values[k]}"`);
    return v;
  };
  const ctx = await createContext();
  try {
    console.log(
      await collectCommand(ctx, {
        model: values.model!,
        promptsFile: values.prompts!,
        hook: values.hook!,
        atSteps: values["at-steps"]!.split(",").map(Number),
        steps: num("steps"),
        half,
        guidance: num("guidance"),
        seed: num("seed"),
        out: values.out!,
        shardPrompts: Math.max(1, num("shard-prompts")),
        variant: values.variant,
        offline: values.offline,
        quiet: values.quiet,
      }),
    );
  } finally {
    ctx.destroy();
  }
  return 0;
}

// (sae train)

// (sae explain)

// (sae layout)

class UsageError extends Error {}

const SAE_COMMANDS: Record<string, (args: string[]) => Promise<number>> = {
  collect: saeCollect,
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
