/**
 * `diffscope sae collect`: activations of a hook point over a prompt file, streamed into a resumable shard store.
 * Deno edge code.
 * @module
 */
import type { GpuContext } from "../gpu/context.ts";
import { appendShard, readManifest, type StoreManifest } from "../io/activation_store.ts";
import { progressBar } from "../io/progress.ts";
import { type CollectedRows, collectPrompt } from "../sae/collect.ts";
import type { Half } from "../hooks/hooks.ts";
import { loadPipelineCli } from "./generate.ts";

/** Arguments of {@linkcode collectCommand}. */
export interface CollectArgs {
  model: string;
  promptsFile: string;
  hook: string;
  atSteps: number[];
  steps: number;
  half: Half;
  guidance: number;
  seed: number;
  out: string;
  /** Prompts per shard (default 1: every prompt is committed as soon as it is done). */
  shardPrompts: number;
  variant?: string;
  offline?: boolean;
  quiet?: boolean;
}

/** Runs (or resumes) a collection; returns a summary line. */
export async function collectCommand(ctx: GpuContext, a: CollectArgs): Promise<string> {
  const prompts = (await Deno.readTextFile(a.promptsFile)).split("\n").map((l) => l.trim()).filter(Boolean);
  if (prompts.length === 0) throw new Error(`${a.promptsFile} has no prompts (one per line)`);
  for (const s of a.atSteps) {
    if (!Number.isInteger(s) || s < 0 || s >= a.steps) {
      throw new RangeError(`--at-steps ${s} is not a step of ${a.steps}`);
    }
  }
  await Deno.mkdir(a.out, { recursive: true });
  let m = await readManifest(a.out);
  const want = { hook: a.hook, atSteps: a.atSteps, steps: a.steps, half: a.half, prompts };
  if (m) {
    const same = m.hook === want.hook && JSON.stringify(m.atSteps) === JSON.stringify(want.atSteps) &&
      m.steps === want.steps && m.half === want.half && JSON.stringify(m.prompts) === JSON.stringify(prompts);
    if (!same) throw new Error(`${a.out} holds a different collection (its manifest.json); use another --out`);
  }
  const pipe = await loadPipelineCli(ctx, a);
  try {
    const bar = progressBar("collect", prompts.length, { unit: "prompts", silent: a.quiet });
    bar.tick(m?.promptsDone ?? 0);
    let batch: CollectedRows[] = [];
    const t0 = performance.now();
    let rows = 0;
    for (let i = m?.promptsDone ?? 0; i < prompts.length; i++) {
      const r = await collectPrompt(pipe, prompts, i, { ...a, hook: a.hook });
      m ??= {
        format: "diffscope.activations/1",
        ...want,
        d: r.d,
        grid: r.grid,
        images: r.image !== undefined,
        promptsDone: 0,
        rows: 0,
        shards: [],
      } as StoreManifest;
      batch.push(r);
      rows += r.index.length / 4;
      if (batch.length >= a.shardPrompts || i === prompts.length - 1) {
        await appendShard(a.out, m, batch);
        batch = [];
      }
      bar.tick(1, `${(rows / ((performance.now() - t0) / 1000)).toFixed(0)} rows/s`);
    }
    bar.done();
    return `${a.out}: ${m!.rows} rows of ${m!.d} values from ${m!.promptsDone} prompts in ${m!.shards.length} shard(s)`;
  } finally {
    pipe.release();
  }
}
