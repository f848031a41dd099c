/**
 * Model sources: a local diffusers folder, or a Hugging Face repo id (`CompVis/stable-diffusion-v1-4`) resolved
 * first in the local Hugging Face cache, then downloaded into that same cache layout, so files researchers already
 * have are reused and files we fetch are reused by their tools.
 *
 * Cache layout (huggingface_hub's): `<cache>/models--<org>--<name>/{refs/<revision>, snapshots/<commit>/<path>,
 * blobs/<etag>}`, where `<cache>` is `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`. Snapshot
 * files are symlinks into blobs/. Downloads resume from `blobs/<etag>.incomplete` with an HTTP range request and are
 * checked against their SHA-256 (the ETag of LFS files) before they are renamed into place.
 * Deno edge code (files, network, environment).
 * @module
 */
import type { ModelFiles } from "../models/files.ts";
import { localModelFiles } from "./model_dir.ts";
import { type ProgressBar, progressBar } from "./progress.ts";

/** Where and how to resolve a model. */
export interface ResolveOptions {
  /** Branch, tag or commit (default "main"). */
  revision?: string;
  /** Never touch the network (as `HF_HUB_OFFLINE=1`). */
  offline?: boolean;
  /** Hub endpoint (default `$HF_ENDPOINT` or https://huggingface.co). */
  endpoint?: string;
  /** Access token for gated repos (default `$HF_TOKEN`). */
  token?: string;
  /** Cache folder (default from the environment, see the module doc). */
  cacheDir?: string;
  /** Prefer `*.fp16.safetensors` weights when downloading. */
  variant?: string;
  quiet?: boolean;
}

/** Thrown when a model cannot be found locally and may not or could not be downloaded. */
export class ModelNotFoundError extends Error {
  override name = "ModelNotFoundError";
}

/** The Hugging Face hub cache folder this process uses. */
export function hubCacheDir(): string {
  const env = (k: string) => Deno.env.get(k);
  const cache = env("HF_HUB_CACHE") ?? env("HUGGINGFACE_HUB_CACHE");
  if (cache) return cache;
  const home = env("HF_HOME") ?? `${env("XDG_CACHE_HOME") ?? `${env("HOME") ?? "."}/.cache`}/huggingface`;
  return `${home}/hub`;
}

const REPO_ID = /^[\w.-]+\/[\w.-]+$/;

async function isDir(p: string): Promise<boolean> {
  try {
    return (await Deno.stat(p)).isDirectory;
  } catch {
    return false;
  }
}

async function isFile(p: string): Promise<boolean> {
  try {
    return (await Deno.stat(p)).isFile;
  } catch {
    return false;
  }
}

/** Files of a repo that an SD pipeline needs (weights as safetensors only). */
function wanted(files: string[], variant?: string): string[] {
  const skip = /(^|\/)(safety_checker|feature_extractor)\//;
  const keep = files.filter((f) =>
    !skip.test(f) &&
    (f === "model_index.json" || /\.(json|txt)$/.test(f) && f.includes("/") ||
      /\.safetensors$/.test(f) && f.includes("/"))
  );
  // per folder, one weights file: the variant when asked and present, else the plain one
  const byDir = new Map<string, string[]>();
  for (const f of keep.filter((f) => f.endsWith(".safetensors"))) {
    const d = f.slice(0, f.lastIndexOf("/"));
    byDir.set(d, [...(byDir.get(d) ?? []), f]);
  }
  const weights = new Set<string>();
  for (const list of byDir.values()) {
    const v = variant && list.find((f) => f.endsWith(`.${variant}.safetensors`));
    const plain = list.find((f) => !/\.\w+\.safetensors$/.test(f.slice(f.lastIndexOf("/") + 1)));
    const pick = v || plain || list[0];
    if (pick) weights.add(pick);
  }
  return keep.filter((f) => !f.endsWith(".safetensors") || weights.has(f));
}

/**
 * Resolves a local folder or a repo id to model files. A repo id is looked up in the cache (any snapshot of the
 * revision that holds `model_index.json`), then downloaded unless offline.
 */
export async function resolveModel(idOrPath: string, opts: ResolveOptions = {}): Promise<ModelFiles> {
  if (await isDir(idOrPath)) return localModelFiles(idOrPath);
  if (!REPO_ID.test(idOrPath)) {
    throw new ModelNotFoundError(`"${idOrPath}" is neither a folder nor a Hugging Face repo id (org/name)`);
  }
  const revision = opts.revision ?? "main";
  const cache = opts.cacheDir ?? hubCacheDir();
  const repoDir = `${cache}/models--${idOrPath.replace("/", "--")}`;
  const snapshot = await cachedSnapshot(repoDir, revision);
  if (snapshot) return localModelFiles(snapshot);
  const offline = opts.offline ?? ["1", "true"].includes((Deno.env.get("HF_HUB_OFFLINE") ?? "").toLowerCase());
  if (offline) {
    throw new ModelNotFoundError(
      `"${idOrPath}" (revision ${revision}) is not in the Hugging Face cache at ${cache}, and downloads are off ` +
        `(HF_HUB_OFFLINE). Download it with \`huggingface-cli download ${idOrPath}\`, or run without --offline, ` +
        `or pass --model DIR pointing at a diffusers folder.`,
    );
  }
  return localModelFiles(await download(idOrPath, revision, repoDir, opts));
}

/** The snapshot folder of `revision` in the cache when it holds a pipeline, else null. */
async function cachedSnapshot(repoDir: string, revision: string): Promise<string | null> {
  let commit = revision;
  if (!/^[0-9a-f]{40}$/.test(revision)) {
    try {
      commit = (await Deno.readTextFile(`${repoDir}/refs/${revision}`)).trim();
    } catch {
      return null;
    }
  }
  const dir = `${repoDir}/snapshots/${commit}`;
  return (await isFile(`${dir}/model_index.json`)) ? dir : null;
}

async function download(repo: string, revision: string, repoDir: string, opts: ResolveOptions): Promise<string> {
  const endpoint = (opts.endpoint ?? Deno.env.get("HF_ENDPOINT") ?? "https://huggingface.co").replace(/\/+$/, "");
  const token = opts.token ?? Deno.env.get("HF_TOKEN");
  const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
  let info: { sha?: string; siblings?: { rfilename: string }[] };
  try {
    const r = await fetch(`${endpoint}/api/models/${repo}/revision/${encodeURIComponent(revision)}`, { headers });
    if (r.status === 401 || r.status === 403) {
      await r.body?.cancel();
      throw new ModelNotFoundError(`${repo}: access denied (HTTP ${r.status}); set HF_TOKEN for gated models`);
    }
    if (!r.ok) {
      await r.body?.cancel();
      throw new ModelNotFoundError(`${repo} (revision ${revision}) was not found on ${endpoint} (HTTP ${r.status})`);
    }
    info = await r.json();
  } catch (e) {
    if (e instanceof ModelNotFoundError) throw e;
    throw new ModelNotFoundError(
      `"${repo}" is not in the Hugging Face cache (${repoDir}) and ${endpoint} cannot be reached ` +
        `(${(e as Error).message}). Copy the model there, set HF_HOME, or pass --model DIR.`,
    );
  }
  const commit = info.sha;
  if (!commit || !info.siblings) throw new ModelNotFoundError(`${endpoint}: unexpected answer for ${repo}`);
  const files = wanted(info.siblings.map((s) => s.rfilename), opts.variant);
  if (!files.includes("model_index.json")) {
    throw new ModelNotFoundError(`${repo} has no model_index.json: not a diffusers pipeline`);
  }
  const snap = `${repoDir}/snapshots/${commit}`;
  await Deno.mkdir(`${repoDir}/blobs`, { recursive: true });
  for (const f of files) {
    const target = `${snap}/${f}`;
    if (await isFile(target)) continue;
    await fetchIntoCache(`${endpoint}/${repo}/resolve/${commit}/${f}`, headers, repoDir, target, f, opts.quiet);
  }
  await Deno.mkdir(`${repoDir}/refs`, { recursive: true });
  if (!/^[0-9a-f]{40}$/.test(revision)) await Deno.writeTextFile(`${repoDir}/refs/${revision}`, commit);
  return snap;
}

async function sha256Hex(path: string): Promise<string> {
  // Web Crypto has no streaming digest: read in one go (weights are read this way once, at download).
  const data = await Deno.readFile(path);
  const h = await crypto.subtle.digest("SHA-256", data);
  return [...new Uint8Array(h)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Downloads one file into blobs/<etag> (resuming, verified) and links it from the snapshot. */
async function fetchIntoCache(
  url: string,
  headers: Record<string, string>,
  repoDir: string,
  target: string,
  name: string,
  quiet?: boolean,
): Promise<void> {
  const head = await fetch(url, { method: "HEAD", headers, redirect: "follow" });
  await head.body?.cancel();
  if (!head.ok) throw new ModelNotFoundError(`${url}: HTTP ${head.status}`);
  const etag = (head.headers.get("x-linked-etag") ?? head.headers.get("etag") ?? "").replace(/^W\//, "").replace(
    /"/g,
    "",
  );
  const size = Number(head.headers.get("x-linked-size") ?? head.headers.get("content-length") ?? NaN);
  if (!etag) throw new ModelNotFoundError(`${url}: the server gave no ETag`);
  const blob = `${repoDir}/blobs/${etag}`;
  if (!(await isFile(blob))) {
    const partial = `${blob}.incomplete`;
    let have = 0;
    try {
      have = (await Deno.stat(partial)).size;
    } catch { /* fresh download */ }
    const r = await fetch(url, { headers: have ? { ...headers, range: `bytes=${have}-` } : headers });
    if (!r.ok) {
      await r.body?.cancel();
      throw new ModelNotFoundError(`${url}: HTTP ${r.status}`);
    }
    if (have && r.status !== 206) have = 0; // the server ignored the range: start over
    const file = await Deno.open(partial, { write: true, create: true, truncate: have === 0, append: have > 0 });
    let bar: ProgressBar | null = null;
    if (Number.isFinite(size) && size > 1 << 20) {
      bar = progressBar(name, Math.ceil(size / 2 ** 20), { unit: "MiB", silent: quiet });
    }
    let got = have, shown = Math.floor(have / 2 ** 20);
    bar?.tick(shown);
    try {
      for await (const chunk of r.body!) {
        let off = 0;
        while (off < chunk.length) off += await file.write(chunk.subarray(off));
        got += chunk.length;
        const mib = Math.floor(got / 2 ** 20);
        if (mib > shown) bar?.tick(mib - shown), shown = mib;
      }
    } finally {
      file.close();
    }
    bar?.done();
    if (Number.isFinite(size) && got !== size) {
      throw new ModelNotFoundError(`${url}: got ${got} bytes of ${size}; run again to resume`);
    }
    if (/^[0-9a-f]{64}$/.test(etag)) { // LFS files: the ETag is the content's SHA-256
      const sum = await sha256Hex(partial);
      if (sum !== etag) {
        await Deno.remove(partial);
        throw new ModelNotFoundError(`${url}: checksum mismatch (sha256 ${sum}, expected ${etag}); removed, run again`);
      }
    }
    await Deno.rename(partial, blob);
  }
  await Deno.mkdir(target.slice(0, target.lastIndexOf("/")), { recursive: true });
  const depth = target.slice(repoDir.length + 1).split("/").length - 1;
  try {
    await Deno.symlink(`${"../".repeat(depth)}blobs/${etag}`, target);
  } catch {
    await Deno.copyFile(blob, target); // file systems without symlinks
  }
}
