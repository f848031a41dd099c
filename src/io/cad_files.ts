/**
 * CAD files on the local disk (Deno only): score sets (one F32 tensor per parameter, named like the parameter, with
 * the score metadata), undo patches (`<name>/indices` I32, `<name>/values` F32) and report folders.
 * @module
 */
import type { GpuContext } from "../gpu/context.ts";
import { numel, type Tensor } from "../gpu/tensor.ts";
import type { SafetensorsFile, TensorToWrite } from "../safetensors/mod.ts";
import { parseScoreMetadata, type ScoreEntry, type ScoreMeta, scoreMetadata } from "../cad/scores.ts";
import { type AblationPatch, ablationPatchTensors, readAblationPatch } from "../cad/ablate.ts";
import { cadReportFiles, type CadReportOptions, type ScoreSummary } from "../cad/report.ts";
import { openSafetensorsFile, writeSafetensorsFile } from "./safetensors_file.ts";

/** Scores to save: on the GPU (read back one at a time while writing) or already on the host. */
export type ScoresToSave = ReadonlyMap<string, Tensor | Omit<ScoreEntry, "name">>;

/**
 * Writes a score set atomically: one F32 tensor per parameter, in the map's order, with the metadata of
 * {@linkcode scoreMetadata}. GPU tensors are read back one at a time as the file is written.
 */
export async function saveScores(
  ctx: GpuContext | null,
  path: string,
  scores: ScoresToSave,
  meta: ScoreMeta,
): Promise<void> {
  const tensors = new Map<string, TensorToWrite>();
  for (const [name, s] of scores) {
    if ("buffer" in s) {
      if (s.dtype !== "f32") throw new TypeError(`saveScores: "${name}" is ${s.dtype}, expected f32`);
      if (!ctx) throw new TypeError(`saveScores: "${name}" is on the GPU but no context was given`);
      tensors.set(name, { dtype: "F32", shape: s.shape, data: () => ctx.readF32(s) });
    } else {
      if (s.data.length !== numel(s.shape)) {
        throw new TypeError(`saveScores: "${name}" has ${s.data.length} values for shape [${s.shape.join(",")}]`);
      }
      tensors.set(name, { dtype: "F32", shape: s.shape, data: s.data });
    }
  }
  await writeSafetensorsFile(path, tensors, scoreMetadata(meta));
}

/** An open score file: its metadata, and parameters read on demand. */
export interface ScoreFile {
  readonly meta: ScoreMeta;
  /** Parameter names, in file order. */
  readonly names: readonly string[];
  readonly file: SafetensorsFile;
  /** One parameter's scores. */
  read(name: string): Promise<ScoreEntry>;
  /** Every parameter (or those named), one at a time (for {@linkcode summarizeScores}). */
  entries(names?: readonly string[]): AsyncIterable<ScoreEntry>;
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** Opens a score file written by {@linkcode saveScores}, checking its metadata. */
export async function openScores(path: string): Promise<ScoreFile> {
  const file = await openSafetensorsFile(path);
  let meta: ScoreMeta;
  try {
    meta = parseScoreMetadata(file.metadata, path);
  } catch (e) {
    await file.close();
    throw e;
  }
  const read = async (name: string): Promise<ScoreEntry> => ({
    name,
    shape: file.info(name).shape,
    data: await file.readF32(name),
  });
  return {
    meta,
    names: file.names,
    file,
    read,
    async *entries(names = file.names) {
      for (const n of names) yield await read(n);
    },
    close: () => file.close(),
    [Symbol.asyncDispose]: () => file.close(),
  };
}

/** Loads a score set onto the GPU (every parameter, or those named). */
export async function loadScores(
  ctx: GpuContext,
  path: string,
  names?: readonly string[],
): Promise<{ meta: ScoreMeta; scores: Map<string, Tensor> }> {
  await using f = await openScores(path);
  const scores = new Map<string, Tensor>();
  for await (const e of f.entries(names)) scores.set(e.name, ctx.upload(e.data, e.shape, "f32", `scores ${e.name}`));
  return { meta: f.meta, scores };
}

/** Writes an undo patch atomically (see `ablationPatchTensors` for the layout). */
export async function saveAblationPatch(path: string, patch: AblationPatch): Promise<void> {
  const { tensors, metadata } = ablationPatchTensors(patch);
  await writeSafetensorsFile(path, tensors, metadata);
}

/** Reads an undo patch written by {@linkcode saveAblationPatch}. */
export async function loadAblationPatch(path: string): Promise<AblationPatch> {
  await using f = await openSafetensorsFile(path);
  return await readAblationPatch(f);
}

/** Writes `index.html`, `attribution_mass.svg` and `summary.json` into `dir` (created); returns their paths. */
export async function writeCadReport(
  dir: string,
  summary: ScoreSummary,
  opts: CadReportOptions = {},
): Promise<Record<string, string>> {
  await Deno.mkdir(dir, { recursive: true });
  const out: Record<string, string> = {};
  for (const [name, text] of Object.entries(cadReportFiles(summary, opts))) {
    const path = `${dir.replace(/\/+$/, "")}/${name}`;
    await Deno.writeTextFile(path, text);
    out[name] = path;
  }
  return out;
}
