/**
 * Access to a model folder in the diffusers layout (`model_index.json`, `unet/`, `text_encoder/`, …) without
 * assuming a file system: a local folder (Deno, `src/io/model_dir.ts`), a URL prefix (browsers, HTTP ranges) or
 * anything else that can list, read text and give ranged byte access.
 * @module
 */
import { type ByteSource, httpRangeSource } from "../safetensors/source.ts";
import { openSafetensors, type SafetensorsFile } from "../safetensors/reader.ts";

/** A model folder. Paths are relative and use `/`. */
export interface ModelFiles {
  /** The folder's name for messages (a path or URL). */
  readonly name: string;
  exists(path: string): Promise<boolean>;
  readText(path: string): Promise<string>;
  open(path: string): Promise<ByteSource>;
}

/** Parses a JSON file of the folder, naming the file when it is missing or invalid. */
export async function readJson(files: ModelFiles, path: string): Promise<Record<string, unknown>> {
  if (!(await files.exists(path))) throw new Error(`${files.name}: missing "${path}"`);
  const text = await files.readText(path);
  try {
    const v = JSON.parse(text);
    if (!v || typeof v !== "object" || Array.isArray(v)) throw new Error("not a JSON object");
    return v;
  } catch (e) {
    throw new Error(`${files.name}/${path} is not valid JSON: ${(e as Error).message}`);
  }
}

/**
 * Candidate weight files of a component, in preference order: `<base>.<variant>.safetensors` first when a variant
 * is asked for, else the plain file with the fp16 variant as a fallback (diffusers' naming).
 */
export function weightFiles(base: string, variant?: string): string[] {
  return variant
    ? [`${base}.${variant}.safetensors`, `${base}.safetensors`]
    : [`${base}.safetensors`, `${base}.fp16.safetensors`];
}

/** Opens the first existing of `candidates` as safetensors; the error lists them all when none exists. */
export async function openFirst(files: ModelFiles, candidates: readonly string[]): Promise<[SafetensorsFile, string]> {
  for (const c of candidates) {
    if (await files.exists(c)) {
      const src = await files.open(c);
      try {
        return [await openSafetensors(src, `${files.name}/${c}`), c];
      } catch (e) {
        await src.close?.();
        throw e;
      }
    }
  }
  throw new Error(`${files.name}: none of ${candidates.map((c) => `"${c}"`).join(", ")} exists`);
}

/** A model folder served over HTTP (e.g. next to a web app); weights are read with range requests. */
export function urlModelFiles(base: string | URL): ModelFiles {
  const root = new URL(base.toString().endsWith("/") ? base.toString() : base + "/");
  return {
    name: root.href,
    async exists(path) {
      const r = await fetch(new URL(path, root), { method: "HEAD" });
      await r.body?.cancel();
      return r.ok;
    },
    async readText(path) {
      const r = await fetch(new URL(path, root));
      if (!r.ok) throw new Error(`${root.href}${path}: HTTP ${r.status}`);
      return await r.text();
    },
    open: (path) => httpRangeSource(new URL(path, root)),
  };
}
