/**
 * An activation store on disk: shards `shard-<n>.safetensors` (`activations` [rows, d] F32 and `index` [rows, 4]
 * I32 = prompt, step, half, position) and `manifest.json` naming the shards and how many prompts are done. Every
 * file is written to a temporary name and renamed, shard first, manifest last, so a run killed at any moment leaves
 * a consistent store: rerunning skips the prompts the manifest lists and nothing is duplicated or missing.
 * {@linkcode openActivationStore} reads a store back as a training source, a batch of rows at a time.
 * @module
 */
import { writeFileAtomic } from "./files.ts";
import { writePng } from "./png.ts";
import { openSafetensorsFile, writeSafetensorsFile } from "./safetensors_file.ts";
import { type ActivationFile, openActivationsFile } from "./sae_files.ts";
import type { CollectedRows } from "../sae/collect.ts";
import type { ActivationSource } from "../sae/sources.ts";

/**
 * manifest.json. A store is either per-position rows of generations over a prompt file (`sae collect`), or, with
 * `pooled: true`, Revelio's one mean-pooled row per real image (`sae collect --pooled`). In a pooled store
 * `prompts` holds the image file names (so column 0 of `index` names its source either way), `atSteps` is empty,
 * `steps` is 0, `half` is "none", `grid` is [1, 1], and an index row is (image, timestep, −1, 0).
 */
export interface StoreManifest {
  format: "diffscope.activations/1";
  hook: string;
  d: number;
  atSteps: number[];
  steps: number;
  half: string;
  /** The prompts, or in a pooled store the image file names (sorted, as found in `imageDir`). */
  prompts: string[];
  /** Spatial size [H, W] of the activation map: a row's position q is (q / W, q % W). */
  grid?: [number, number];
  /**
   * `images/prompt-<i>.png` holds source i's image: prompt i's generated image (when the model makes RGB images),
   * or in a pooled store image i as the model saw it (resized and centre-cropped to `size`).
   */
  images?: boolean;
  /** Revelio's image-level rows: one spatial mean of the hook's output per image. */
  pooled?: boolean;
  /** Pooled: the image folder as given when the collection started. */
  imageDir?: string;
  /** Pooled: the DDPM training timestep of the single noising. */
  timestep?: number;
  /** Pooled: crop size in pixels. */
  size?: number;
  /** Pooled: image i's noise is seeded with seed + i. */
  seed?: number;
  /** Prompts (or images) 0 … promptsDone − 1 are in the shards. */
  promptsDone: number;
  rows: number;
  shards: { file: string; rows: number; prompts: [number, number] }[];
  /** How many times {@linkcode compactStore} has merged the shards (names its block files apart). */
  compactions?: number;
}

/** Reads the manifest, or null when the folder has none. */
export async function readManifest(dir: string): Promise<StoreManifest | null> {
  try {
    return JSON.parse(await Deno.readTextFile(`${dir}/manifest.json`));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw new Error(`${dir}/manifest.json is unreadable: ${(e as Error).message}`);
  }
}

/** Where prompt `i`'s image is kept in a store. */
export function storeImagePath(dir: string, i: number): string {
  return `${dir}/images/prompt-${String(i).padStart(5, "0")}.png`;
}

/**
 * Appends one shard holding `batch` (consecutive prompts) and commits it to the manifest; the prompts' images are
 * written first (a rerun after a kill rewrites them).
 */
export async function appendShard(dir: string, m: StoreManifest, batch: CollectedRows[]): Promise<void> {
  for (const b of batch) {
    if (!b.image) continue;
    await Deno.mkdir(`${dir}/images`, { recursive: true });
    await writePng(storeImagePath(dir, b.prompt), b.image.pixels, b.image.width, b.image.height);
  }
  const rows = batch.reduce((a, b) => a + b.index.length / 4, 0);
  const acts = new Float32Array(rows * m.d), index = new Int32Array(rows * 4);
  let r = 0;
  for (const b of batch) {
    acts.set(b.activations, r * m.d);
    index.set(b.index, r * 4);
    r += b.index.length / 4;
  }
  const file = `shard-${String(m.shards.length).padStart(5, "0")}.safetensors`;
  await writeSafetensorsFile(`${dir}/${file}`, {
    activations: { dtype: "F32", shape: [rows, m.d], data: acts },
    index: { dtype: "I32", shape: [rows, 4], data: index },
  }, { hook: m.hook });
  const first = batch[0].prompt, last = batch[batch.length - 1].prompt;
  m.shards.push({ file, rows, prompts: [first, last + 1] });
  m.promptsDone = last + 1;
  m.rows += rows;
  await writeFileAtomic(`${dir}/manifest.json`, new TextEncoder().encode(JSON.stringify(m, null, 1)));
}

/** Shard size {@linkcode compactStore} aims at by default. */
export const COMPACT_BYTES = 256 * 2 ** 20;

/**
 * Merges runs of consecutive small shards of a finished store into blocks of up to `targetBytes` of activations
 * (`block-<generation>-<n>.safetensors`), so a training run that shuffles across the whole store reads from a few
 * files rather than one per prompt (collect commits a shard per prompt so that a kill loses little). Crash-safe:
 * blocks are written (atomically) first, then the manifest that names them, then the old shards are removed; a run
 * killed midway leaves the old manifest valid and, at worst, unreferenced blocks, which the next compaction removes.
 * Returns the number of shards after compaction (unchanged when nothing merges).
 */
export async function compactStore(
  dir: string,
  m: StoreManifest,
  opts: { targetBytes?: number } = {},
): Promise<number> {
  const target = opts.targetBytes ?? COMPACT_BYTES;
  const rowBytes = m.d * 4;
  const groups: StoreManifest["shards"][] = [];
  for (const s of m.shards) {
    const g = groups.at(-1);
    if (g && (g.reduce((a, x) => a + x.rows, 0) + s.rows) * rowBytes <= target) g.push(s);
    else groups.push([s]);
  }
  const referenced = async () => new Set((await readManifest(dir))?.shards.map((s) => s.file) ?? []);
  if (groups.length < m.shards.length) {
    const gen = (m.compactions ?? 0) + 1;
    const shards: StoreManifest["shards"] = [];
    for (const [i, g] of groups.entries()) {
      if (g.length === 1) {
        shards.push(g[0]);
        continue;
      }
      const rows = g.reduce((a, s) => a + s.rows, 0);
      const acts = new Float32Array(rows * m.d), index = new Int32Array(rows * 4);
      let r = 0;
      for (const s of g) {
        await using st = await openSafetensorsFile(`${dir}/${s.file}`);
        acts.set(await st.readF32("activations"), r * m.d);
        index.set(await st.readI32("index"), r * 4);
        r += s.rows;
      }
      const file = `block-${gen}-${String(i).padStart(5, "0")}.safetensors`;
      await writeSafetensorsFile(`${dir}/${file}`, {
        activations: { dtype: "F32", shape: [rows, m.d], data: acts },
        index: { dtype: "I32", shape: [rows, 4], data: index },
      }, { hook: m.hook });
      shards.push({ file, rows, prompts: [g[0].prompts[0], g[g.length - 1].prompts[1]] });
    }
    m.shards = shards;
    m.compactions = gen;
    await writeFileAtomic(`${dir}/manifest.json`, new TextEncoder().encode(JSON.stringify(m, null, 1)));
  }
  // shards and blocks the manifest no longer names (merged, or left by a compaction that was killed)
  const keep = await referenced();
  for await (const e of Deno.readDir(dir)) {
    if (/^(shard|block)-[\d-]+\.safetensors$/.test(e.name) && !keep.has(e.name)) await Deno.remove(`${dir}/${e.name}`);
  }
  return m.shards.length;
}

/** Reads every row of the store back (activations [rows, d] and index [rows, 4]), in manifest order. */
export async function readStore(
  dir: string,
): Promise<{ m: StoreManifest; activations: Float32Array; index: Int32Array }> {
  const m = await readManifest(dir);
  if (!m) throw new Error(`${dir} has no manifest.json: not an activation store`);
  const activations = new Float32Array(m.rows * m.d), index = new Int32Array(m.rows * 4);
  let r = 0;
  for (const s of m.shards) {
    await using st = await openSafetensorsFile(`${dir}/${s.file}`);
    activations.set(await st.readF32("activations"), r * m.d);
    index.set(await st.readI32("index"), r * 4);
    r += s.rows;
  }
  return { m, activations, index };
}

/** Which rows of a store to train on (default: all). */
export interface StoreFilter {
  /** Keep only rows of these denoising steps (each must be one of the manifest's `atSteps`). */
  steps?: readonly number[];
  /** Keep only the cond or the uncond half. */
  half?: "cond" | "uncond";
  /** Shard files kept open at once (least recently used are closed; default 256: collect writes a shard per prompt by default, and shuffled batches touch most of them). */
  maxOpen?: number;
}

/** A store as a training source: rows are manifest rows (those the filter keeps, in manifest order). */
export interface ActivationStore extends ActivationSource {
  readonly dir: string;
  readonly manifest: StoreManifest;
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Opens an activation store as a training source. A batch may ask for rows of any shards in any order (the
 * trainer's shuffle spans the whole store): each shard's rows are read in file order, consecutive rows in one read,
 * and returned in the order asked. With a filter (e.g. one timestep, to train one SAE per step as the papers do),
 * row i is the i-th row the filter keeps.
 *
 * ```ts ignore
 * await using store = await openActivationStore("acts/", { steps: [0] });
 * const { sae } = await trainSAE(ctx, store, { d: store.d, k: 20 });
 * ```
 */
export async function openActivationStore(dir: string, opts: StoreFilter = {}): Promise<ActivationStore> {
  const m = await readManifest(dir);
  if (!m) {
    const stat = await Deno.stat(dir).catch(() => null);
    throw new Error(
      stat ? `${dir} has no manifest.json: not an activation store (sae collect makes one)` : `${dir}: no such folder`,
    );
  }
  const counted = m.shards.reduce((a, s) => a + s.rows, 0);
  if (counted !== m.rows) {
    throw new Error(`${dir}/manifest.json is inconsistent: its shards hold ${counted} rows, it says ${m.rows}`);
  }
  const starts = [0];
  for (const s of m.shards) starts.push(starts.at(-1)! + s.rows);
  const maxOpen = Math.max(1, opts.maxOpen ?? 256);
  const open = new Map<number, ActivationFile>(); // in order of last use
  const shard = async (i: number): Promise<ActivationFile> => {
    let f = open.get(i);
    if (f) open.delete(i);
    else {
      const { file, rows } = m.shards[i];
      f = await openActivationsFile(`${dir}/${file}`, "activations");
      if (f.d !== m.d || f.rows !== rows) {
        await f.close();
        throw new Error(
          `${dir}/${file}: "activations" is [${f.rows}, ${f.d}], the manifest says [${rows}, ${m.d}] (d mismatch?)`,
        );
      }
      if (open.size >= maxOpen) {
        const [oldest, g] = open.entries().next().value!;
        open.delete(oldest);
        await g.close();
      }
    }
    open.set(i, f);
    return f;
  };
  const close = async () => {
    for (const f of open.values()) await f.close();
    open.clear();
  };

  let kept: Uint32Array | null = null; // filtered row → store row
  try {
    if (m.shards.length) await shard(0); // a d mismatch is found now, not at the first batch
    if (opts.steps || opts.half) kept = await filterRows(dir, m, opts, shard);
  } catch (e) {
    await close();
    throw e;
  }
  const rows = kept ? kept.length : m.rows;
  const d = m.d;
  return {
    dir,
    manifest: m,
    rows,
    d,
    async batch(ids, rec) {
      // group the batch's positions by shard, then let each shard read its rows (runs merged, order kept)
      const byShard = new Map<number, number[]>();
      const global = new Uint32Array(ids.length);
      for (let p = 0; p < ids.length; p++) {
        if (!(ids[p] < rows)) throw new RangeError(`${dir}: row ${ids[p]} asked of a store of ${rows} rows`);
        const g = kept ? kept[ids[p]] : ids[p];
        global[p] = g;
        const s = shardOf(starts, g);
        const list = byShard.get(s);
        if (list) list.push(p);
        else byShard.set(s, [p]);
      }
      const out = new Float32Array(ids.length * d);
      for (const s of [...byShard.keys()].sort((a, b) => a - b)) {
        const pos = byShard.get(s)!;
        const vals = await (await shard(s)).batch(Uint32Array.from(pos, (p) => global[p] - starts[s]), rec);
        const v = vals as Float32Array;
        for (let i = 0; i < pos.length; i++) out.set(v.subarray(i * d, i * d + d), pos[i] * d);
      }
      return out;
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** The shard holding store row `g` (starts: each shard's first row, then the total). */
function shardOf(starts: readonly number[], g: number): number {
  let lo = 0, hi = starts.length - 2;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (starts[mid] <= g) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/** The store rows a filter keeps, from each shard's `index` (prompt, step, half, position). */
async function filterRows(
  dir: string,
  m: StoreManifest,
  f: StoreFilter,
  shard: (i: number) => Promise<ActivationFile>,
): Promise<Uint32Array> {
  for (const s of f.steps ?? []) {
    if (!m.atSteps.includes(s)) {
      throw new RangeError(`${dir} has no rows of step ${s}: it holds steps ${m.atSteps.join(", ")}`);
    }
  }
  if (f.half && m.half !== "both" && m.half !== f.half) {
    throw new RangeError(`${dir} has no ${f.half} rows: it holds the ${m.half} half only`);
  }
  const steps = f.steps ? new Set(f.steps) : null;
  const half = f.half === undefined ? -1 : f.half === "cond" ? 1 : 0;
  const kept: number[] = [];
  let base = 0;
  for (let i = 0; i < m.shards.length; i++) {
    const index = await (await shard(i)).file.readI32("index");
    for (let r = 0; r < m.shards[i].rows; r++) {
      if ((steps === null || steps.has(index[4 * r + 1])) && (half < 0 || index[4 * r + 2] === half)) {
        kept.push(base + r);
      }
    }
    base += m.shards[i].rows;
  }
  return Uint32Array.from(kept);
}
