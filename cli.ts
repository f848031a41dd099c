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

const USAGE = `diffscope — interpretability of diffusion models on WebGPU

usage: deno run -A cli.ts <command> [options]

commands:
  info      show the WebGPU adapter, its limits and features, and run the kernel self-check
            --json   print the report as JSON
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

const COMMANDS: Record<string, (args: string[]) => Promise<number>> = { info };

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
    if (e instanceof TypeError && (e as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) {
      console.error(`diffscope ${cmd}: ${e.message}`);
      return 2;
    }
    throw e;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
