/**
 * `diffscope sae collect`: activations of a hook point over a prompt file (or, with `--pooled`, Revelio's one
 * mean-pooled vector per real image of a folder), streamed into a resumable shard store. Deno edge code.
 * @module
 */
import type { GpuContext } from "../gpu/context.ts";
import { appendShard, compactStore, readManifest, type StoreManifest } from "../io/activation_store.ts";
import { readPng } from "../io/png.ts";
import { progressBar } from "../io/progress.ts";
import { type CollectedRows, collectPrompt } from "../sae/collect.ts";
import { PooledCollector } from "../sae/collect_pooled.ts";
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
  if (m) checkSameCollection(a.out, m, want, false);
  const pipe = await loadPipelineCli(ctx, a);
  try {
    const bar = progressBar("collect", prompts.length, { unit: "prompts", silent: a.quiet, start: m?.promptsDone });
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
      bar.tick(1, `${(rows / ((performance.now() - t0) / 1000)).toFixed(0)} tokens/s`);
    }
    bar.done();
    await compactStore(a.out, m!);
    return `${a.out}: ${m!.rows} rows of ${m!.d} values from ${m!.promptsDone} prompts in ${m!.shards.length} shard(s)`;
  } finally {
    pipe.release();
  }
}

/** Arguments of {@linkcode collectPooledCommand}. */
export interface CollectPooledArgs {
  model: string;
  /** Folder of PNG images (read in name order). */
  imageDir: string;
  hook: string;
  /** DDPM training timestep of the noising. */
  timestep: number;
  /** Crop size in pixels. */
  size: number;
  /** Image i's noise is seeded with seed + i. */
  seed: number;
  out: string;
  /** Images per U-Net call. */
  batch: number;
  /** Images per shard (a shard is committed once at least this many are pending, and at the end). */
  shardImages: number;
  variant?: string;
  offline?: boolean;
  quiet?: boolean;
}

/** The PNG files of a folder (not recursive), sorted by name (code-unit order, so the same on every system). */
export async function listPngs(dir: string): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) if (e.isFile && /\.png$/i.test(e.name)) names.push(e.name);
  } catch (e) {
    throw new Error(`--images ${dir} cannot be listed: ${(e as Error).message}`);
  }
  if (names.length === 0) throw new Error(`--images ${dir} holds no PNG images (*.png)`);
  return names.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/** Runs (or resumes) a pooled collection over the images of a folder; returns a summary line. */
export async function collectPooledCommand(ctx: GpuContext, a: CollectPooledArgs): Promise<string> {
  const names = await listPngs(a.imageDir);
  if (!Number.isInteger(a.batch) || a.batch < 1) throw new RangeError(`--batch must be a positive integer`);
  await Deno.mkdir(a.out, { recursive: true });
  let m = await readManifest(a.out);
  const hook = a.hook.replace(/^unet\./, "");
  const want = { pooled: true, hook, timestep: a.timestep, size: a.size, seed: a.seed, prompts: names };
  if (m) checkSameCollection(a.out, m, want, true);
  const pipe = await loadPipelineCli(ctx, a);
  let col: PooledCollector | undefined;
  try {
    col = await PooledCollector.create(pipe, { hook, timestep: a.timestep, size: a.size, seed: a.seed });
    const start = m?.promptsDone ?? 0;
    // rate and ETA count this run's images only (not those of a resumed store); one pooled row (token) per image
    const bar = progressBar("collect", names.length, { unit: "images", silent: a.quiet, start });
    const t0 = performance.now();
    let pending: CollectedRows[] = [];
    for (let i = start; i < names.length; i += a.batch) {
      const group = names.slice(i, i + a.batch);
      const images = [];
      for (const file of group) {
        const path = `${a.imageDir}/${file}`;
        images.push({ ...await readPng(path), name: path }); // conversion errors name the file too
      }
      const rows = await col.collect(images, i);
      m ??= {
        format: "diffscope.activations/1",
        ...want,
        imageDir: a.imageDir,
        atSteps: [],
        steps: 0,
        half: "none",
        d: rows[0].d,
        grid: [1, 1],
        images: rows[0].image !== undefined,
        promptsDone: 0,
        rows: 0,
        shards: [],
      } satisfies StoreManifest;
      pending.push(...rows);
      if (pending.length >= a.shardImages || i + group.length >= names.length) {
        await appendShard(a.out, m, pending);
        pending = [];
      }
      const rate = (i + group.length - start) / ((performance.now() - t0) / 1000);
      bar.tick(group.length, `${rate.toFixed(rate < 10 ? 2 : 0)} tokens/s`);
    }
    bar.done();
    await compactStore(a.out, m!);
    return `${a.out}: ${m!.rows} pooled rows of ${m!.d} values (${hook}, t = ${a.timestep}) from ` +
      `${m!.promptsDone} images in ${m!.shards.length} shard(s)`;
  } finally {
    col?.release();
    pipe.release();
  }
}

/**
 * Throws unless the store's manifest `m` is the collection asked for (`want`'s fields), naming what differs, so a
 * rerun resumes only its own collection.
 */
function checkSameCollection(out: string, m: StoreManifest, want: Record<string, unknown>, pooled: boolean): void {
  if (!!m.pooled !== pooled) {
    const what = pooled ? "not a pooled one" : "a pooled one";
    throw new Error(`${out} holds a different collection (${what}; see its manifest.json); use another --out`);
  }
  const diff = Object.entries(want).filter(([k, v]) =>
    JSON.stringify((m as unknown as Record<string, unknown>)[k]) !== JSON.stringify(v)
  ).map(([k]) => (k === "prompts" ? (pooled ? "image list" : "prompts") : k));
  if (diff.length) {
    throw new Error(
      `${out} holds a different collection (its ${diff.join(", ")} differ; see its manifest.json); use another --out`,
    );
  }
}
