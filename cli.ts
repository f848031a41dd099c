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
            DIR_OR_REPO is a diffusers folder or a Hugging Face repo id (looked up in the HF cache first)
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
      }),
    );
  } finally {
    ctx.destroy();
  }
  return 0;
}

class UsageError extends Error {}

const COMMANDS: Record<string, (args: string[]) => Promise<number>> = { info, forward, generate };

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
