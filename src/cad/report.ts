/**
 * A report of a CAD score set: the strongest components of each layer, the attribution mass of each U-Net block (an
 * SVG bar chart written by hand), the entries an ablation would zero, a JSON summary and a static HTML page tying
 * them together. The page is self-contained (inline SVG and CSS, no script, a Content-Security-Policy that forbids
 * every fetch), so it opens from disk or an archive. Files are written by `writeCadReport` in `src/io/cad_files.ts`.
 * @module
 */
import type { ScoreEntry, ScoreMeta } from "./scores.ts";
import { ablationQuota } from "./ablate.ts";

/** One scored entry of a parameter: for a 2-D weight [out, in], row = output unit, col = input. */
export interface ScoredWeight {
  param: string;
  /** Index along all but the last dimension (the output row of a Linear weight). */
  row: number;
  /** Index along the last dimension. */
  col: number;
  score: number;
}

/** Per-parameter totals. Sums skip non-finite scores (counted in `nonFinite`). */
export interface LayerSummary {
  name: string;
  /** `down_blocks.i`, `mid_block`, `up_blocks.i`, or `other`. */
  block: string;
  shape: number[];
  elements: number;
  /** Σ S over S > 0. */
  positive: number;
  /** Σ S over S < 0 (≤ 0). */
  negative: number;
  positiveCount: number;
  negativeCount: number;
  /** NaN or ±∞ scores (an fp16 overflow in the gradient sum shows up here). */
  nonFinite: number;
  /** The largest positive scores, best first (ties: lower flat index first). */
  top: ScoredWeight[];
  /** The most negative scores, most negative first. */
  bottom: ScoredWeight[];
  /** What per-row ablation at the summary's ratio would zero (2-D parameters only). */
  ablation?: { quota: number; positive: number; negative: number };
}

/** Attribution mass of one U-Net block. */
export interface BlockSummary {
  block: string;
  layers: number;
  elements: number;
  positive: number;
  negative: number;
}

/** Everything the report shows; JSON-serialisable. */
export interface ScoreSummary {
  meta: ScoreMeta | null;
  /** Components listed per layer and sign. */
  topN: number;
  /** The ablation ratio of the `ablation` previews. */
  ratio: number;
  layers: LayerSummary[];
  /** In U-Net order: down_blocks.0…, mid_block, up_blocks.0…, other. */
  blocks: BlockSummary[];
  totals: {
    elements: number;
    positive: number;
    negative: number;
    positiveCount: number;
    negativeCount: number;
    nonFinite: number;
    /** Entries positive (resp. negative) ablation at `ratio` would zero, over all 2-D parameters. */
    ablatedPositive: number;
    ablatedNegative: number;
  };
}

/** Options of {@linkcode summarizeScores}. */
export interface ScoreSummaryOptions {
  /** Metadata of the score set (shown in the report). */
  meta?: ScoreMeta | null;
  /** Components to list per layer and sign. Default 10. */
  topN?: number;
  /** Ablation ratio for the per-layer previews. Default 0.001 (CAD's default). */
  ratio?: number;
}

const BLOCK_RE = /(?:^|\.)(down_blocks\.\d+|up_blocks\.\d+|mid_block)(?:\.|$)/;

/** The U-Net block of a parameter name: `down_blocks.i`, `mid_block`, `up_blocks.i`, or `other`. */
export function unetBlockOf(name: string): string {
  return BLOCK_RE.exec(name)?.[1] ?? "other";
}

function blockRank(block: string): [number, number] {
  const m = /^(down_blocks|up_blocks)\.(\d+)$/.exec(block);
  if (m) return [m[1] === "down_blocks" ? 0 : 2, +m[2]];
  return [block === "mid_block" ? 1 : 3, 0];
}

/** Keeps the n best (score, index) pairs seen, best first; a later equal score does not displace an earlier one. */
class Best {
  scores: number[] = [];
  indices: number[] = [];
  constructor(readonly n: number, readonly sign: 1 | -1) {}
  offer(v: number, i: number): void {
    const s = this.sign * v, list = this.scores;
    if (list.length === this.n && !(s > this.sign * list[list.length - 1])) return;
    let at = list.length;
    while (at > 0 && s > this.sign * list[at - 1]) at--;
    list.splice(at, 0, v);
    this.indices.splice(at, 0, i);
    if (list.length > this.n) {
      list.pop();
      this.indices.pop();
    }
  }
}

/**
 * Summarises a score set in one pass over each parameter (entries can be streamed from a file one at a time):
 * attribution mass per layer and block, the top and bottom components, and the ablation each layer would get.
 */
export async function summarizeScores(
  entries: Iterable<ScoreEntry> | AsyncIterable<ScoreEntry>,
  opts: ScoreSummaryOptions = {},
): Promise<ScoreSummary> {
  const { topN = 10, ratio = 0.001, meta = null } = opts;
  if (!Number.isInteger(topN) || topN < 0) throw new RangeError(`summarizeScores: topN ${topN} must be an integer ≥ 0`);
  if (!(ratio >= 0 && ratio <= 1)) throw new RangeError(`summarizeScores: ratio ${ratio} must lie in [0, 1]`);
  const layers: LayerSummary[] = [];
  for await (const e of entries) layers.push(summarizeLayer(e, topN, ratio));
  const blocks = new Map<string, BlockSummary>();
  for (const l of layers) {
    const b = blocks.get(l.block) ??
      blocks.set(l.block, { block: l.block, layers: 0, elements: 0, positive: 0, negative: 0 }).get(l.block)!;
    b.layers++;
    b.elements += l.elements;
    b.positive += l.positive;
    b.negative += l.negative;
  }
  const order = [...blocks.values()].sort((a, b) => {
    const [ra, rb] = [blockRank(a.block), blockRank(b.block)];
    return ra[0] - rb[0] || ra[1] - rb[1];
  });
  const sum = (f: (l: LayerSummary) => number) => layers.reduce((s, l) => s + f(l), 0);
  return {
    meta,
    topN,
    ratio,
    layers,
    blocks: order,
    totals: {
      elements: sum((l) => l.elements),
      positive: sum((l) => l.positive),
      negative: sum((l) => l.negative),
      positiveCount: sum((l) => l.positiveCount),
      negativeCount: sum((l) => l.negativeCount),
      nonFinite: sum((l) => l.nonFinite),
      ablatedPositive: sum((l) => l.ablation?.positive ?? 0),
      ablatedNegative: sum((l) => l.ablation?.negative ?? 0),
    },
  };
}

function summarizeLayer(e: ScoreEntry, topN: number, ratio: number): LayerSummary {
  const elements = e.shape.reduce((a, b) => a * b, 1);
  if (e.data.length !== elements) {
    throw new TypeError(`summarizeScores: "${e.name}" has ${e.data.length} values for shape [${e.shape.join(",")}]`);
  }
  const cols = e.shape.length ? e.shape[e.shape.length - 1] : 1;
  const twoD = e.shape.length === 2;
  const quota = twoD ? ablationQuota(ratio, cols) : 0;
  const top = new Best(topN, 1), bottom = new Best(topN, -1);
  let positive = 0, negative = 0, positiveCount = 0, negativeCount = 0, nonFinite = 0;
  let ablatedPos = 0, ablatedNeg = 0;
  const d = e.data;
  for (let base = 0; base < elements; base += cols) {
    let rowPos = 0, rowNeg = 0;
    for (let i = base; i < base + cols; i++) {
      const v = d[i];
      if (v > 0) {
        if (v === Infinity) {
          nonFinite++;
          continue;
        }
        positive += v;
        rowPos++;
        top.offer(v, i);
      } else if (v < 0) {
        if (v === -Infinity) {
          nonFinite++;
          continue;
        }
        negative += v;
        rowNeg++;
        bottom.offer(v, i);
      } else if (v !== v) nonFinite++;
    }
    positiveCount += rowPos;
    negativeCount += rowNeg;
    ablatedPos += Math.min(quota, rowPos);
    ablatedNeg += Math.min(quota, rowNeg);
  }
  const components = (b: Best) =>
    b.scores.map((score, j) => {
      const i = b.indices[j];
      return { param: e.name, row: Math.floor(i / cols), col: i % cols, score };
    });
  return {
    name: e.name,
    block: unetBlockOf(e.name),
    shape: [...e.shape],
    elements,
    positive,
    negative,
    positiveCount,
    negativeCount,
    nonFinite,
    top: components(top),
    bottom: components(bottom),
    ...(twoD ? { ablation: { quota, positive: ablatedPos, negative: ablatedNeg } } : {}),
  };
}

// ---- rendering ----

/** Escapes text for HTML and SVG (element content and quoted attributes). */
function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** A number for people: 3 significant digits, exponent form outside [1e-3, 1e5). */
function fmtNumber(x: number): string {
  if (x === 0) return "0";
  if (!Number.isFinite(x)) return String(x);
  const a = Math.abs(x);
  return a >= 1e-3 && a < 1e5 ? String(Number(x.toPrecision(3))) : x.toExponential(2);
}

/** A round axis over [lo, hi]: bounds and ticks on multiples of a step of 1, 2 or 5 × 10^k, about `count` steps. */
function niceAxis(lo: number, hi: number, count: number): { lo: number; hi: number; ticks: number[] } {
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw * (1 - 1e-9))!;
  const [a, b] = [Math.floor(lo / step + 1e-9), Math.ceil(hi / step - 1e-9)];
  const ticks: number[] = [];
  for (let i = a; i <= b; i++) ticks.push(i === 0 ? 0 : Number((i * step).toPrecision(12)));
  return { lo: a * step, hi: b * step, ticks };
}

/** Options of {@linkcode massChartSvg}. */
export interface MassChartOptions {
  width?: number;
  height?: number;
  title?: string;
}

const POS_COLOR = "#c8553d";
const NEG_COLOR = "#2f6690";

/**
 * A diverging bar chart of the attribution mass per block: Σ S>0 upwards, Σ S<0 downwards, one column per block.
 * Standalone SVG markup (valid as a file and inline in HTML).
 */
export function massChartSvg(blocks: readonly BlockSummary[], opts: MassChartOptions = {}): string {
  const { width = 860, height = 400, title = "Attribution mass per U-Net block" } = opts;
  const m = { left: 78, right: 16, top: 52, bottom: 48 };
  const pw = width - m.left - m.right, ph = height - m.top - m.bottom;
  let hi = Math.max(0, ...blocks.map((b) => b.positive));
  let lo = Math.min(0, ...blocks.map((b) => b.negative));
  if (hi === lo) [lo, hi] = [-1, 1];
  const axis = niceAxis(lo, hi, 6);
  [lo, hi] = [axis.lo, axis.hi];
  const y = (v: number) => m.top + ((hi - v) / (hi - lo)) * ph;
  const f = (v: number) => v.toFixed(1);
  const band = pw / Math.max(1, blocks.length), bar = Math.min(48, band * 0.6);
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" class="mass-chart" width="${width}" height="${height}" ` +
      `viewBox="0 0 ${width} ${height}" role="img" aria-labelledby="mass-chart-title" ` +
      `font-family="system-ui, sans-serif" font-size="12">`,
    `<title id="mass-chart-title">${esc(title)}</title>`,
    `<rect width="${width}" height="${height}" fill="#fff"/>`,
    `<text x="${m.left}" y="20" font-size="15" font-weight="600">${esc(title)}</text>`,
    `<rect x="${m.left}" y="30" width="11" height="11" fill="${POS_COLOR}"/>`,
    `<text x="${m.left + 16}" y="40">Σ S over S &gt; 0</text>`,
    `<rect x="${m.left + 130}" y="30" width="11" height="11" fill="${NEG_COLOR}"/>`,
    `<text x="${m.left + 146}" y="40">Σ S over S &lt; 0</text>`,
  );
  for (const t of axis.ticks) {
    out.push(
      `<line x1="${m.left}" x2="${m.left + pw}" y1="${f(y(t))}" y2="${f(y(t))}" stroke="#e3e3e3"/>`,
      `<text x="${m.left - 6}" y="${f(y(t) + 4)}" text-anchor="end" fill="#444">${esc(fmtNumber(t))}</text>`,
    );
  }
  blocks.forEach((b, i) => {
    const cx = m.left + band * (i + 0.5), x = f(cx - bar / 2);
    const y0 = y(0), yp = y(b.positive), yn = y(b.negative);
    out.push(
      `<g class="block" data-block="${esc(b.block)}">`,
      `<rect class="bar positive" x="${x}" y="${f(yp)}" width="${f(bar)}" height="${f(y0 - yp)}" fill="${POS_COLOR}">` +
        `<title>${esc(`${b.block}: Σ S>0 = ${fmtNumber(b.positive)}`)}</title></rect>`,
      `<rect class="bar negative" x="${x}" y="${f(y0)}" width="${f(bar)}" height="${f(yn - y0)}" fill="${NEG_COLOR}">` +
        `<title>${esc(`${b.block}: Σ S<0 = ${fmtNumber(b.negative)}`)}</title></rect>`,
      `<text x="${f(cx)}" y="${height - m.bottom + 18}" text-anchor="middle">${esc(b.block)}</text>`,
      `</g>`,
    );
  });
  out.push(
    `<line x1="${m.left}" x2="${m.left + pw}" y1="${f(y(0))}" y2="${f(y(0))}" stroke="#222"/>`,
    `<line x1="${m.left}" x2="${m.left}" y1="${m.top}" y2="${m.top + ph}" stroke="#222"/>`,
    `<text transform="translate(16 ${f(m.top + ph / 2)}) rotate(-90)" text-anchor="middle" fill="#444">` +
      `attribution S = w·∂J/∂w</text>`,
    `</svg>`,
  );
  return out.join("\n");
}

/** The summary as JSON text (what `summary.json` holds). */
function summaryJson(summary: ScoreSummary): string {
  return JSON.stringify(summary, null, 1);
}

const CSS = `
body { font: 14px/1.45 system-ui, sans-serif; color: #1d1d1d; margin: 2rem auto; max-width: 1100px; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin-bottom: .3rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
table { border-collapse: collapse; margin: .5rem 0 1rem; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid #ddd; padding: .2rem .6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; } th { background: #f4f4f4; }
td.name { font-family: ui-monospace, monospace; font-size: 12px; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .1rem 1rem; } dt { color: #555; } dd { margin: 0; }
.pos { color: ${POS_COLOR}; } .neg { color: ${NEG_COLOR}; }
details { margin: .3rem 0; } summary { cursor: pointer; font-family: ui-monospace, monospace; font-size: 12px; }
svg.mass-chart { max-width: 100%; height: auto; }
.pair { display: flex; gap: 2rem; flex-wrap: wrap; } pre { background: #f6f6f6; padding: .8rem; overflow: auto; }
.note { color: #555; }`;

/** Options of {@linkcode cadReportHtml}. */
export interface CadReportOptions {
  /** Page title. Default "CAD attribution — <concept>". */
  title?: string;
  /** How many layers to list in the per-layer components section (by attribution mass). Default all. */
  maxLayers?: number;
}

/** The report page: static HTML, the chart inline, no script and no external resource. */
export function cadReportHtml(summary: ScoreSummary, opts: CadReportOptions = {}): string {
  const meta = summary.meta;
  const title = opts.title ?? `CAD attribution — ${meta?.concept ?? "score set"}`;
  const t = summary.totals;
  const num = (x: number, cls = "") => `<td${cls ? ` class="${cls}"` : ""}>${esc(fmtNumber(x))}</td>`;
  const int = (x: number) => `<td>${x.toLocaleString("en-US")}</td>`;
  const h: string[] = [];
  h.push(
    `<!doctype html>`,
    `<html lang="en">`,
    `<head>`,
    `<meta charset="utf-8">`,
    `<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">`,
    `<meta name="viewport" content="width=device-width, initial-scale=1">`,
    `<title>${esc(title)}</title>`,
    `<link rel="icon" href="data:,">`,
    `<style>${CSS}</style>`,
    `</head>`,
    `<body>`,
    `<h1>${esc(title)}</h1>`,
    `<p class="note">Attribution of each weight w to the concept score J: S = w·∂J/∂w, the first-order change of J ` +
      `when w is zeroed being −S (Nguyen et al., <i>Unveiling Concept Attribution in Diffusion Models</i>).</p>`,
  );
  h.push(`<dl>`);
  const dl = (k: string, v: string) => h.push(`<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`);
  if (meta) {
    dl("concept", meta.concept);
    dl("objective", meta.mode);
    dl("model", meta.model);
    dl(
      "timesteps",
      `${meta.timesteps.length} (${meta.timesteps.slice(0, 8).join(", ")}${meta.timesteps.length > 8 ? ", …" : ""})`,
    );
    dl("samples per timestep", String(meta.samples));
    dl("seed", String(meta.seed));
  }
  dl("parameters", `${summary.layers.length} (${t.elements.toLocaleString("en-US")} weights)`);
  dl("Σ S over S > 0", `${fmtNumber(t.positive)} (${t.positiveCount.toLocaleString("en-US")} weights)`);
  dl("Σ S over S < 0", `${fmtNumber(t.negative)} (${t.negativeCount.toLocaleString("en-US")} weights)`);
  if (t.nonFinite) dl("non-finite scores", `${t.nonFinite} (excluded from the sums)`);
  dl(
    `ablation at ratio ${summary.ratio} (per row)`,
    `positive zeroes ${t.ablatedPositive.toLocaleString("en-US")}, negative ${
      t.ablatedNegative.toLocaleString("en-US")
    } weights`,
  );
  h.push(`</dl>`);

  h.push(`<h2>Attribution mass per block</h2>`, massChartSvg(summary.blocks));
  h.push(
    `<table class="blocks"><thead><tr><th>block</th><th>parameters</th><th>weights</th>` +
      `<th>Σ S&gt;0</th><th>Σ S&lt;0</th></tr></thead><tbody>`,
  );
  for (const b of summary.blocks) {
    h.push(
      `<tr><td class="name">${esc(b.block)}</td>${int(b.layers)}${int(b.elements)}${num(b.positive, "pos")}${
        num(b.negative, "neg")
      }</tr>`,
    );
  }
  h.push(`</tbody></table>`);

  h.push(
    `<h2>Layers</h2>`,
    `<table class="layers"><thead><tr><th>parameter</th><th>shape</th><th>Σ S&gt;0</th><th>Σ S&lt;0</th>` +
      `<th>#S&gt;0</th><th>#S&lt;0</th><th>q per row</th><th>zeroed (pos.)</th><th>zeroed (neg.)</th></tr></thead><tbody>`,
  );
  for (const l of summary.layers) {
    const a = l.ablation;
    h.push(
      `<tr><td class="name">${esc(l.name)}</td><td>[${l.shape.join(", ")}]</td>${num(l.positive, "pos")}${
        num(l.negative, "neg")
      }${int(l.positiveCount)}${int(l.negativeCount)}${
        a ? `${int(a.quota)}${int(a.positive)}${int(a.negative)}` : "<td>–</td><td>–</td><td>–</td>"
      }</tr>`,
    );
  }
  h.push(`</tbody></table>`);

  const byMass = [...summary.layers].sort((a, b) => (b.positive - b.negative) - (a.positive - a.negative));
  const shown = byMass.slice(0, opts.maxLayers ?? byMass.length);
  h.push(
    `<h2>Strongest components per layer</h2>`,
    `<p class="note">Layers by total |S|; (row, col) index the weight [out, in]. ` +
      `Ties go to the lower flat index.</p>`,
  );
  const comps = (list: ScoredWeight[], cls: string, head: string) =>
    `<table><thead><tr><th>${head}</th><th>row</th><th>col</th><th>S</th></tr></thead><tbody>` +
    list.map((c, i) => `<tr><td>${i + 1}</td>${int(c.row)}${int(c.col)}${num(c.score, cls)}</tr>`).join("") +
    `</tbody></table>`;
  for (const l of shown) {
    h.push(
      `<details class="layer"><summary>${esc(l.name)}</summary><div class="pair">`,
      comps(l.top, "pos", "top S&gt;0"),
      comps(l.bottom, "neg", "top S&lt;0"),
      `</div></details>`,
    );
  }
  h.push(
    `<h2>Summary (JSON)</h2>`,
    `<details><summary>summary.json</summary><pre>${esc(summaryJson(summary))}</pre></details>`,
    `</body>`,
    `</html>`,
  );
  return h.join("\n") + "\n";
}

/** The report's files by name: `index.html`, `attribution_mass.svg`, `summary.json`. */
export function cadReportFiles(summary: ScoreSummary, opts: CadReportOptions = {}): Record<string, string> {
  return {
    "index.html": cadReportHtml(summary, opts),
    "attribution_mass.svg": `<?xml version="1.0" encoding="UTF-8"?>\n${massChartSvg(summary.blocks)}\n`,
    "summary.json": summaryJson(summary) + "\n",
  };
}
