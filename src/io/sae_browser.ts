/**
 * The SAE feature browser on disk (Deno only): an activation store read image by image as an `ImageSource`, object
 * masks from a folder, and the static browser itself — `index.html`, `data.js`, `features.json`, heat-map PNGs and
 * copies of the store's images — which opens from file:// with no server.
 * @module
 */
import type { GpuContext } from "../gpu/context.ts";
import { openActivationStore, storeImagePath, type StoreManifest } from "./activation_store.ts";
import { writeFileAtomic } from "./files.ts";
import { readMaskPng } from "./mask.ts";
import { encodePng } from "./png.ts";
import { openSafetensorsFile } from "./safetensors_file.ts";
import type { FeatureLabel, FeatureMask, ImageSource, TopImage } from "../sae/explain.ts";

/** One image of a store: the activation map of one (prompt, step, half). */
export interface StoreImage {
  prompt: number;
  step: number;
  /** 0 uncond, 1 cond. */
  half: number;
}

/** An activation store as images: {@linkcode ImageSource} plus what each image is. Close it when done. */
export interface StoreImageSource extends ImageSource {
  readonly manifest: StoreManifest;
  /** Image id → (prompt, step, half), ordered by prompt, then step, then half. */
  readonly meta: readonly StoreImage[];
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Opens the store in `dir` as images: every (prompt, step, half) whose rows cover the whole grid, or only those of
 * step `atStep`. Reads the shards' `index` tensors now (16 bytes a row) to map each image's positions to store
 * rows; activations are read per batch through {@linkcode openActivationStore}, never a whole shard.
 */
export async function openStoreImages(dir: string, opts: { atStep?: number } = {}): Promise<StoreImageSource> {
  const store = await openActivationStore(dir);
  try {
    const m = store.manifest;
    if (opts.atStep !== undefined && !m.atSteps.includes(opts.atStep)) {
      throw new RangeError(`--at-step ${opts.atStep}: the store ${dir} holds steps ${m.atSteps.join(", ")}`);
    }
    const grid: [number, number] = m.grid ?? [1, 1];
    const P = grid[0] * grid[1];
    const groups = new Map<string, { img: StoreImage; rows: Int32Array }>();
    let base = 0; // store row of the shard's first row
    for (const shard of m.shards) {
      const path = `${dir}/${shard.file}`;
      let index: Int32Array;
      {
        await using st = await openSafetensorsFile(path);
        index = await st.readI32("index");
      }
      if (index.length !== shard.rows * 4) {
        throw new Error(`${path}: "index" holds ${index.length / 4} rows, the manifest says ${shard.rows}`);
      }
      for (let r = 0; r < shard.rows; r++) {
        const [prompt, step, half, q] = index.subarray(4 * r, 4 * r + 4);
        if (opts.atStep !== undefined && step !== opts.atStep) continue;
        if (q < 0 || q >= P) throw new RangeError(`${path}: row ${r} has position ${q}, grid ${grid.join("×")}`);
        const key = `${prompt}/${step}/${half}`;
        let g = groups.get(key);
        if (!g) groups.set(key, g = { img: { prompt, step, half }, rows: new Int32Array(P).fill(-1) });
        g.rows[q] = base + r;
      }
      base += shard.rows;
    }
    const list = [...groups.values()].sort((a, b) =>
      a.img.prompt - b.img.prompt || a.img.step - b.img.step || a.img.half - b.img.half
    );
    const rowsOf = new Uint32Array(list.length * P); // image g's store rows, position by position
    list.forEach((g, i) => {
      const missing = g.rows.indexOf(-1);
      if (missing >= 0) {
        throw new Error(`${dir}: prompt ${g.img.prompt}, step ${g.img.step} lacks the row of position ${missing}`);
      }
      rowsOf.set(g.rows, i * P);
    });
    return {
      manifest: m,
      meta: list.map((g) => g.img),
      images: list.length,
      grid,
      d: m.d,
      read(ids, rec) {
        const rows = new Uint32Array(ids.length * P);
        ids.forEach((g, i) => {
          if (!(g >= 0 && g < list.length)) throw new RangeError(`${dir}: image ${g} of ${list.length} asked`);
          rows.set(rowsOf.subarray(g * P, (g + 1) * P), i * P);
        });
        return store.batch(rows, rec);
      },
      close: () => store.close(),
      [Symbol.asyncDispose]: () => store.close(),
    };
  } catch (e) {
    await store.close();
    throw e;
  }
}

/**
 * Mask files: `prompt-<5 digits>.<label>.png` (the label may hold dots), read by `readMaskPng`: white (or, in a
 * cut-out with transparency, opaque) pixels are the object.
 */
export const MASK_FILE = /^prompt-(\d+)\.(.+)\.png$/i;

/**
 * Reads the masks in `dir` (named as {@linkcode MASK_FILE}) for the images of `src`: a mask of prompt i applies to
 * every image (step, half) of prompt i. Files for prompts outside the source are skipped, and so are files that are
 * not PNGs and hidden files (.DS_Store, README, notes); a PNG named otherwise is an error.
 */
export async function readMasks(
  ctx: GpuContext,
  dir: string,
  src: StoreImageSource,
): Promise<FeatureMask[]> {
  const byPrompt = new Map<number, number[]>();
  src.meta.forEach((img, id) => byPrompt.set(img.prompt, [...(byPrompt.get(img.prompt) ?? []), id]));
  const out: FeatureMask[] = [];
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) if (e.isFile) names.push(e.name);
  for (const name of names.sort()) {
    if (name.startsWith(".") || !name.toLowerCase().endsWith(".png")) continue;
    const m = MASK_FILE.exec(name);
    if (!m) throw new Error(`${dir}/${name}: mask files are named prompt-NNNNN.<label>.png`);
    const ids = byPrompt.get(Number(m[1]));
    if (!ids) continue;
    const img = await readMaskPng(ctx, `${dir}/${name}`);
    for (const image of ids) out.push({ image, label: m[2], ...img });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// The browser

/** One feature as the browser shows it. */
export interface BrowserFeature {
  id: number;
  count: number;
  frequency: number;
  name?: string;
  /** Labels from masks: each label with how many (mask, image) pairs gave it and the best IoU. */
  labels: { label: string; count: number; iou: number }[];
  top: (TopImage & { map: number[] })[];
}

/** What {@linkcode writeFeatureBrowser} writes. */
export interface BrowserData {
  title: string;
  sae: { file: string; d: number; nLatents: number; k: number; relu: boolean };
  store: { dir: string; hook: string; grid: readonly [number, number]; atStep: number | null; rows: number };
  /** What ranked the top images and drew the heat maps: the TopK code or ReLU of the dense pre-activation. */
  rank: "code" | "dense";
  /** Every image of the source (id → prompt, step, half, prompt text). */
  images: (StoreImage & { text: string })[];
  /** Every latent's count (frequency = count / rows) and top images, for features.json. */
  all: { id: number; count: number; top: TopImage[]; labels: FeatureLabel[]; name?: string }[];
  /** The features shown, most frequent first. */
  shown: BrowserFeature[];
  /** Whether the store has images (images/prompt-NNNNN.png). */
  hasImages: boolean;
}

/** Summarises a feature's labels: label → (how many masks gave it, best IoU), most frequent first. */
export function summarizeLabels(labels: readonly FeatureLabel[]): BrowserFeature["labels"] {
  const by = new Map<string, { label: string; count: number; iou: number }>();
  for (const l of labels) {
    const e = by.get(l.label) ?? { label: l.label, count: 0, iou: 0 };
    e.count++;
    e.iou = Math.max(e.iou, l.iou);
    by.set(l.label, e);
  }
  return [...by.values()].sort((a, b) => b.count - a.count || b.iou - a.iou || a.label.localeCompare(b.label));
}

/** Stops of the heat colour map (inferno-like), from silent to the feature's largest value. */
const STOPS: readonly [number, number, number][] = [
  [0, 0, 4],
  [66, 10, 104],
  [147, 38, 103],
  [221, 81, 58],
  [252, 165, 10],
  [252, 255, 164],
];

/**
 * A heat map as RGBA8 texels (R in the low byte): value / vmax through the colour map, alpha rising with the value
 * and 0 where the feature is silent (≤ 0), so the image shows through. `values` has at most a few thousand entries.
 */
export function heatTexels(values: ArrayLike<number>, vmax: number): Uint32Array {
  const out = new Uint32Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const t = vmax > 0 ? Math.min(1, Math.max(0, values[i] / vmax)) : 0;
    if (!(t > 0)) continue;
    const x = t * (STOPS.length - 1), j = Math.min(Math.floor(x), STOPS.length - 2), f = x - j;
    const [r, g, b] = [0, 1, 2].map((ch) => Math.round(STOPS[j][ch] + f * (STOPS[j + 1][ch] - STOPS[j][ch])));
    const a = Math.round(255 * (0.35 + 0.65 * t));
    out[i] = (r | (g << 8) | (b << 16) | (a << 24)) >>> 0;
  }
  return out;
}

const pad5 = (i: number) => String(i).padStart(5, "0");

/** The page; everything it shows comes from data.js (file:// pages cannot fetch JSON). */
export const BROWSER_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>SAE feature browser</title>
<link rel="icon" href="data:,">
<style>
  :root { --tile: 128px; }
  body { font: 14px/1.4 system-ui, sans-serif; margin: 0; background: #111; color: #ddd; }
  header { position: sticky; top: 0; background: #1b1b1b; padding: 10px 16px; border-bottom: 1px solid #333; z-index: 1; }
  h1 { font-size: 18px; margin: 0 0 4px; }
  .meta { color: #999; font-size: 12px; }
  .controls { display: flex; gap: 16px; align-items: center; flex-wrap: wrap; margin-top: 8px; }
  input[type=search] { width: 320px; padding: 4px 8px; background: #222; color: #eee; border: 1px solid #444; }
  main { padding: 8px 16px; }
  section.feature { border-bottom: 1px solid #2a2a2a; padding: 10px 0; }
  section.feature h2 { font-size: 15px; margin: 0 0 6px; font-weight: 600; }
  .freq { color: #9cf; font-weight: normal; }
  .name { color: #fc6; }
  .label { display: inline-block; background: #264; color: #cfc; border-radius: 3px; padding: 0 5px; margin-left: 4px;
    font-size: 12px; font-weight: normal; }
  .tops { display: flex; gap: 8px; flex-wrap: wrap; }
  figure { margin: 0; width: var(--tile); }
  .tile { position: relative; width: var(--tile); height: var(--tile); background: #000; }
  .tile img { position: absolute; inset: 0; width: 100%; height: 100%; object-fit: fill; }
  .tile img.heat { opacity: var(--opacity, 0.7); }
  body.pixelated .tile img.heat { image-rendering: pixelated; }
  figcaption { font-size: 11px; color: #aaa; overflow: hidden; display: -webkit-box; -webkit-line-clamp: 3;
    -webkit-box-orient: vertical; }
  .none { color: #777; font-style: italic; }
</style>
</head>
<body class="pixelated">
<header>
  <h1 id="title">SAE feature browser</h1>
  <div class="meta" id="meta"></div>
  <div class="controls">
    <input type="search" id="search" placeholder="filter: feature id, name, label or prompt words">
    <label>heat map opacity <input type="range" id="opacity" min="0" max="1" step="0.05" value="0.7"></label>
    <label><input type="checkbox" id="pixelated" checked> blocky heat maps</label>
    <span id="count"></span>
  </div>
</header>
<main id="features"></main>
<script src="data.js"></script>
<script>
"use strict";
(function () {
  const D = globalThis.FEATURE_BROWSER;
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const pct = (f) => (100 * f).toPrecision(3) + "%";
  document.getElementById("title").textContent = D.title;
  document.title = D.title;
  const s = D.store;
  document.getElementById("meta").textContent =
    "hook " + s.hook + " · grid " + s.grid.join("×") + (s.atStep === null ? "" : " · step " + s.atStep) +
    " · " + D.images.length + " images, " + s.rows + " rows · SAE " + D.sae.file + " (d " + D.sae.d + ", " +
    D.sae.nLatents + " latents, k " + D.sae.k + ") · " + D.shown.length + " features shown" +
    (D.rank === "dense" ? " · ranked by mean ReLU(pre-activation)" : "");
  const main = document.getElementById("features");
  const sections = D.shown.map((f) => {
    const sec = el("section", "feature");
    sec.id = "f" + f.id;
    const h = el("h2", null, "#" + f.id + " ");
    h.append(el("span", "freq", "fires on " + pct(f.frequency) + " of positions (" + f.count + ")"));
    if (f.name) h.append(" ", el("span", "name", f.name));
    for (const l of f.labels) h.append(el("span", "label", l.label + " ×" + l.count + " (IoU " + l.iou.toFixed(2) + ")"));
    sec.append(h);
    const row = el("div", "tops");
    if (f.top.length === 0) row.append(el("span", "none", "never fired on these images"));
    const words = [String(f.id), f.name || "", ...f.labels.map((l) => l.label)];
    for (const t of f.top) {
      const img = D.images[t.image];
      words.push(img.text);
      const fig = el("figure");
      const tile = el("div", "tile");
      if (t.src) {
        const base = el("img", "image");
        base.src = t.src;
        base.alt = img.text;
        tile.append(base);
      }
      const heat = el("img", "heat");
      heat.src = t.heat;
      heat.alt = "heat map of feature " + f.id;
      tile.append(heat);
      fig.append(tile);
      fig.append(el("figcaption", null, img.text + " — step " + img.step + (img.half ? "" : " (uncond)") +
        " · γ " + t.score.toPrecision(3) + " · max " + t.max.toPrecision(3)));
      fig.title = img.text;
      row.append(fig);
    }
    sec.append(row);
    main.append(sec);
    return { sec, text: words.join(" ").toLowerCase() };
  });
  const count = document.getElementById("count");
  const filter = () => {
    const q = document.getElementById("search").value.trim().toLowerCase().split(/\\s+/).filter(Boolean);
    let shown = 0;
    for (const s of sections) {
      const ok = q.every((w) => s.text.includes(w));
      s.sec.hidden = !ok;
      if (ok) shown++;
    }
    count.textContent = shown + " of " + sections.length + " features";
  };
  document.getElementById("search").addEventListener("input", filter);
  const opacity = document.getElementById("opacity");
  const setOpacity = () => document.body.style.setProperty("--opacity", opacity.value);
  opacity.addEventListener("input", setOpacity);
  document.getElementById("pixelated").addEventListener("change", (e) => {
    document.body.classList.toggle("pixelated", e.target.checked);
  });
  setOpacity();
  filter();
  globalThis.__rendered = sections.length;
})();
</script>
</body>
</html>
`;

/** Writes the browser into `dir`; returns the number of files written. Images are copied from the store. */
export async function writeFeatureBrowser(dir: string, data: BrowserData): Promise<number> {
  await Deno.mkdir(`${dir}/maps`, { recursive: true });
  const [H, W] = data.store.grid;
  const enc = new TextEncoder();
  let files = 0;
  const prompts = new Set<number>();
  const shown = [];
  for (const f of data.shown) {
    const vmax = f.top.reduce((a, t) => Math.max(a, ...t.map), 0);
    const top = [];
    for (let r = 0; r < f.top.length; r++) {
      const t = f.top[r];
      const heat = `maps/f${f.id}-${r}.png`;
      await writeFileAtomic(`${dir}/${heat}`, encodePng(heatTexels(t.map, vmax), W, H));
      files++;
      const prompt = data.images[t.image].prompt;
      if (data.hasImages) prompts.add(prompt);
      top.push({
        image: t.image,
        score: t.score,
        max: t.max,
        heat,
        src: data.hasImages ? `images/prompt-${pad5(prompt)}.png` : null,
      });
    }
    shown.push({ ...f, top });
  }
  if (prompts.size) await Deno.mkdir(`${dir}/images`, { recursive: true });
  for (const p of prompts) {
    await writeFileAtomic(
      `${dir}/images/prompt-${pad5(p)}.png`,
      await Deno.readFile(storeImagePath(data.store.dir, p)),
    );
    files++;
  }
  const page = { title: data.title, sae: data.sae, store: data.store, rank: data.rank, images: data.images, shown };
  const write = async (name: string, text: string) => {
    await writeFileAtomic(`${dir}/${name}`, enc.encode(text));
    files++;
  };
  await write("data.js", `globalThis.FEATURE_BROWSER = ${JSON.stringify(page)};\n`);
  await write("index.html", BROWSER_HTML);
  await write(
    "features.json",
    JSON.stringify({
      format: "diffscope.sae-features/1",
      sae: data.sae,
      store: data.store,
      rank: data.rank,
      images: data.images,
      features: data.all.map((f) => ({
        id: f.id,
        count: f.count,
        frequency: f.count / data.store.rows,
        ...(f.name === undefined ? {} : { name: f.name }),
        top: f.top,
        labels: summarizeLabels(f.labels),
      })),
    }),
  );
  return files;
}
