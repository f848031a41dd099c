/**
 * `diffscope sae explain`: a TopK SAE's features over an activation store — frequency, top images with heat maps,
 * labels from masks or names — as a static HTML feature browser and features.json. Deno edge code; the math is in
 * src/sae/explain.ts.
 * @module
 */
import type { GpuContext } from "../gpu/context.ts";
import { loadSaeFile } from "../io/sae_files.ts";
import {
  type BrowserFeature,
  openStoreImages,
  readMasks,
  summarizeLabels,
  writeFeatureBrowser,
} from "../io/sae_browser.ts";
import { type ProgressBar, progressBar } from "../io/progress.ts";
import {
  type ExplainValues,
  type FeatureLabel,
  featureMaps,
  featureStats,
  featureTop,
  labelFeatures,
} from "../sae/explain.ts";

/** Which features the browser shows. */
export type FeatureSelection =
  | { kind: "all" }
  | { kind: "top"; count: number }
  | { kind: "ids"; ids: number[] };

/** Parses `--features`: `all` (every feature that fired), `top-by-frequency:M` (or `top:M`), or ids `3,17,40`. */
export function parseFeatureSelection(spec: string): FeatureSelection {
  const s = spec.trim();
  if (s === "all") return { kind: "all" };
  const top = /^(?:top-by-frequency|top)[:=](\d+)$/.exec(s);
  if (top) {
    const count = Number(top[1]);
    if (count < 1) throw new RangeError(`--features ${spec}: the count must be at least 1`);
    return { kind: "top", count };
  }
  const ids = s.split(",").map((x) => x.trim());
  if (ids.length && ids.every((x) => /^\d+$/.test(x))) return { kind: "ids", ids: [...new Set(ids.map(Number))] };
  throw new TypeError(`--features "${spec}": expected all, top-by-frequency:M, or feature ids like 3,17,40`);
}

/** Arguments of {@linkcode explainCommand}. */
export interface ExplainArgs {
  sae: string;
  data: string;
  out: string;
  /** Top images per feature (default 8). */
  top?: number;
  features?: FeatureSelection;
  atStep?: number;
  masks?: string;
  names?: string;
  /** Rows encoded per batch (default: a 64 MiB dense code; clamped to the device's binding size). */
  batchRows?: number;
  /** Rank top images and draw heat maps by the TopK code (default) or by ReLU of the dense pre-activation. */
  rank?: ExplainValues;
  quiet?: boolean;
}

/** Runs the explanation and writes the browser; returns a summary line. */
export async function explainCommand(ctx: GpuContext, a: ExplainArgs): Promise<string> {
  await using src = await openStoreImages(a.data, { atStep: a.atStep });
  const names = a.names ? await readNames(a.names) : new Map<number, string>();
  const { sae } = await loadSaeFile(ctx, a.sae);
  try {
    const n = sae.config.nLatents;
    if (src.d !== sae.config.d) {
      throw new TypeError(
        `${a.sae} reads rows of d = ${sae.config.d}, but the store ${a.data} (hook ${src.manifest.hook}) holds ` +
          `rows of d = ${src.d}: explain an SAE with the store it was trained on`,
      );
    }
    const rank = a.rank ?? "code";
    for (const c of names.keys()) {
      if (c >= n) throw new RangeError(`${a.names}: feature ${c} is not a latent of ${a.sae} (n = ${n})`);
    }
    // a progress bar per pass, and the `onProgress` that feeds it
    const bar = (what: string, total: number): [ProgressBar, (done: number) => void] => {
      const b = progressBar(`explain: ${what}`, total, { unit: "images", silent: a.quiet });
      let last = 0;
      return [b, (done) => (b.tick(done - last), last = done)];
    };
    let [b, onProgress] = bar("statistics", src.images);
    const stats = await featureStats(sae, src, { top: a.top ?? 8, rank, batchRows: a.batchRows, onProgress });
    b.done();
    const sel = a.features ?? { kind: "top", count: 128 };
    let shownIds: number[];
    const byFreq = (x: number, y: number) => stats.counts[y] - stats.counts[x] || x - y;
    if (sel.kind === "ids") {
      const bad = sel.ids.find((c) => c >= n);
      if (bad !== undefined) throw new RangeError(`--features: ${bad} is not a latent of ${a.sae} (n = ${n})`);
      shownIds = [...sel.ids].sort(byFreq);
    } else {
      const fired = Array.from({ length: n }, (_, c) => c).filter((c) => stats.counts[c] > 0).sort(byFreq);
      shownIds = sel.kind === "all" ? fired : fired.slice(0, sel.count);
    }
    const tops = shownIds.map((c) => featureTop(stats, c));
    const pairs = shownIds.flatMap((c, i) => tops[i].map((t) => ({ feature: c, image: t.image })));
    [b, onProgress] = bar("heat maps", new Set(pairs.map((p) => p.image)).size);
    const maps = await featureMaps(sae, src, pairs, { values: rank, batchRows: a.batchRows, onProgress });
    b.done();
    let labels: FeatureLabel[][] = Array.from({ length: n }, () => []);
    let maskCount = 0;
    if (a.masks) {
      const masks = await readMasks(ctx, a.masks, src);
      maskCount = masks.length;
      if (masks.length) {
        [b, onProgress] = bar("labels", new Set(masks.map((m) => m.image)).size);
        labels = (await labelFeatures(sae, src, masks, { batchRows: a.batchRows, onProgress })).labels;
        b.done();
      }
    }
    const P = src.grid[0] * src.grid[1];
    let at = 0;
    const shown: BrowserFeature[] = shownIds.map((c, i) => ({
      id: c,
      count: stats.counts[c],
      frequency: stats.counts[c] / stats.rows,
      ...(names.has(c) ? { name: names.get(c) } : {}),
      labels: summarizeLabels(labels[c]),
      top: tops[i].map((t) => ({ ...t, map: Array.from(maps.subarray(at * P, ++at * P)) })),
    }));
    const m = src.manifest;
    const saeFile = a.sae.split("/").pop()!;
    const files = await writeFeatureBrowser(a.out, {
      title: `SAE features — ${m.hook}`,
      sae: { file: saeFile, ...sae.config },
      store: { dir: a.data, hook: m.hook, grid: src.grid, atStep: a.atStep ?? null, rows: stats.rows },
      rank,
      images: src.meta.map((img) => ({ ...img, text: m.prompts[img.prompt] ?? `prompt ${img.prompt}` })),
      all: Array.from({ length: n }, (_, c) => ({
        id: c,
        count: stats.counts[c],
        top: featureTop(stats, c),
        labels: labels[c],
        ...(names.has(c) ? { name: names.get(c) } : {}),
      })),
      shown,
      hasImages: m.images === true,
    });
    const dead = stats.counts.reduce((acc, v) => acc + (v === 0 ? 1 : 0), 0);
    const labelled = labels.filter((l) => l.length > 0).length;
    return `${a.out}: ${shown.length} features shown of ${n} (${dead} never fired) over ${src.images} images, ` +
      `${files} files` + (a.masks ? `; ${maskCount} masks labelled ${labelled} features` : "");
  } finally {
    sae.release();
  }
}

/** Reads `{"<feature>": "<name>", …}`. */
async function readNames(path: string): Promise<Map<number, string>> {
  let raw: unknown;
  try {
    raw = JSON.parse(await Deno.readTextFile(path));
  } catch (e) {
    throw new Error(`${path}: expected JSON {"<feature>": "<name>"}: ${(e as Error).message}`);
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new TypeError(`${path}: expected a JSON object {"<feature>": "<name>"}`);
  }
  const out = new Map<number, string>();
  for (const [k, v] of Object.entries(raw)) {
    if (!/^\d+$/.test(k) || typeof v !== "string") {
      throw new TypeError(`${path}: entry "${k}": ${JSON.stringify(v)} is not feature id → name`);
    }
    out.set(Number(k), v);
  }
  return out;
}
