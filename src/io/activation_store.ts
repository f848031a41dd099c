/**
 * An activation store on disk: shards `shard-<n>.safetensors` (`activations` [rows, d] F32 and `index` [rows, 4]
 * I32 = prompt, step, half, position) and `manifest.json` naming the shards and how many prompts are done. Every
 * file is written to a temporary name and renamed, shard first, manifest last, so a run killed at any moment leaves
 * a consistent store: rerunning skips the prompts the manifest lists and nothing is duplicated or missing.
 * @module
 */
import { writeFileAtomic } from "./files.ts";
import { writePng } from "./png.ts";
import { openSafetensorsFile, writeSafetensorsFile } from "./safetensors_file.ts";
import type { CollectedRows } from "../sae/collect.ts";

/** manifest.json. */
export interface StoreManifest {
  format: "diffscope.activations/1";
  hook: string;
  d: number;
  atSteps: number[];
  steps: number;
  half: string;
  prompts: string[];
  /** Spatial size [H, W] of the activation map: a row's position q is (q / W, q % W). */
  grid?: [number, number];
  /** Generated images, `images/prompt-<i>.png` (prompt i's image), when the model makes RGB images. */
  images?: boolean;
  /** Prompts 0 … promptsDone − 1 are in the shards. */
  promptsDone: number;
  rows: number;
  shards: { file: string; rows: number; prompts: [number, number] }[];
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
