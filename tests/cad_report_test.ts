/**
 * CAD reports: the summary against a direct computation (and the ablation preview against the GPU mask), the SVG
 * chart, and the HTML page loaded in headless Chromium (skipped visibly without one; fails in CI).
 */
import { gpuTest } from "./_gpu.ts";
import {
  ablationMask,
  cadReportHtml,
  countZeroed,
  massChartSvg,
  type ScoreEntry,
  type ScoreMeta,
  type ScoreSummary,
  summarizeScores,
  unetBlockOf,
} from "../src/cad/mod.ts";
import { openScores, saveScores, writeCadReport } from "../src/io/cad_files.ts";
import { randn } from "../src/ref/random.ts";
import type { Browser } from "playwright-core";
import assert from "assert";
import { findChromium, launchStaticChromium, watchPage } from "./_chromium.ts";
import { pathToFileURL } from "node:url";

const META: ScoreMeta = {
  concept: "a photo in the style of <Van Gogh> & co",
  mode: "erase",
  timesteps: Array.from({ length: 50 }, (_, i) => 981 - 20 * i),
  samples: 1,
  seed: 0,
  model: "CompVis/stable-diffusion-v1-4",
};

const ff = (block: string, j: number) => `${block}.attentions.${j}.transformer_blocks.0.ff`;
/** A small score set with SD v1.4 names (FF widths scaled down) and one non-2-D parameter. */
function scoreSet(): ScoreEntry[] {
  const layers: [string, number[]][] = [
    [`${ff("down_blocks.0", 0)}.net.0.proj.weight`, [64, 32]],
    [`${ff("down_blocks.0", 0)}.net.2.weight`, [32, 128]],
    [`${ff("down_blocks.1", 1)}.net.2.weight`, [48, 192]],
    [`${ff("mid_block", 0)}.net.0.proj.weight`, [80, 40]],
    [`${ff("up_blocks.1", 2)}.net.2.weight`, [48, 192]],
    [`${ff("up_blocks.3", 0)}.net.0.proj.weight`, [64, 32]],
    [`${ff("up_blocks.3", 0)}.net.0.proj.bias`, [64]],
    ["conv_in.weight", [8, 4, 3, 3]],
  ];
  return layers.map(([name, shape], i) => {
    const n = shape.reduce((a, b) => a * b, 1);
    // different scales per block, a shifted mean so positive and negative mass differ, ties and a NaN
    const data = randn(n, 40 + i, 10 ** -(i % 3)).map((v, j) => (j % 17 === 0 ? Math.round(v) : v + 0.1 * (i - 3)));
    if (i === 2) data[5] = NaN;
    return { name, shape, data };
  });
}

Deno.test("unetBlockOf parses diffusers parameter names", () => {
  assert.equal(unetBlockOf("down_blocks.2.attentions.1.transformer_blocks.0.ff.net.2.weight"), "down_blocks.2");
  assert.equal(unetBlockOf("unet.up_blocks.3.attentions.0.proj_in.weight"), "up_blocks.3");
  assert.equal(unetBlockOf("mid_block.resnets.1.conv1.weight"), "mid_block");
  assert.equal(unetBlockOf("conv_in.weight"), "other");
  assert.equal(unetBlockOf("time_embedding.linear_1.weight"), "other");
  assert.equal(unetBlockOf("down_blocks_extra.weight"), "other");
});

Deno.test("summarizeScores matches a direct computation (mass, counts, top components, ablation preview)", async () => {
  const set = scoreSet();
  const s = await summarizeScores(set, { meta: META, topN: 5, ratio: 0.05 });
  assert.deepEqual(s.layers.map((l) => l.name), set.map((e) => e.name));
  for (const [k, e] of set.entries()) {
    const l = s.layers[k];
    const vals = [...e.data];
    const fin = vals.map((v, i) => [v, i]).filter(([v]) => Number.isFinite(v));
    const cols = e.shape[e.shape.length - 1];
    const close = (a: number, b: number, what: string) =>
      assert.ok(Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(b)), `${e.name} ${what}: ${a} vs ${b}`);
    close(l.positive, fin.filter(([v]) => v > 0).reduce((a, [v]) => a + v, 0), "Σ+");
    close(l.negative, fin.filter(([v]) => v < 0).reduce((a, [v]) => a + v, 0), "Σ−");
    assert.equal(l.positiveCount, fin.filter(([v]) => v > 0).length);
    assert.equal(l.negativeCount, fin.filter(([v]) => v < 0).length);
    assert.equal(l.nonFinite, vals.length - fin.length);
    const byScore = (sign: number) =>
      fin.filter(([v]) => sign * v > 0).sort((a, b) => sign * (b[0] - a[0]) || a[1] - b[1]).slice(0, 5)
        .map(([v, i]) => ({ param: e.name, row: Math.floor(i / cols), col: i % cols, score: v }));
    assert.deepEqual(l.top, byScore(1), `${e.name} top`);
    assert.deepEqual(l.bottom, byScore(-1), `${e.name} bottom`);
    assert.equal(l.ablation === undefined, e.shape.length !== 2);
  }
  assert.deepEqual(s.blocks.map((b) => b.block), [
    "down_blocks.0",
    "down_blocks.1",
    "mid_block",
    "up_blocks.1",
    "up_blocks.3",
    "other",
  ]);
  const up3 = s.blocks.find((b) => b.block === "up_blocks.3")!;
  assert.equal(up3.layers, 2);
  assert.equal(up3.positive, s.layers[5].positive + s.layers[6].positive);
  assert.equal(s.totals.elements, set.reduce((a, e) => a + e.data.length, 0));
  assert.equal(s.totals.nonFinite, 1);
  // every rendering is JSON-clean (no NaN sneaking into the summary)
  assert.deepEqual(JSON.parse(JSON.stringify(s)), s);
});

gpuTest("the summary's ablation preview equals what the GPU mask zeroes", async (ctx) => {
  const set = scoreSet().filter((e) => e.shape.length === 2);
  const s = await summarizeScores(set, { ratio: 0.05 });
  for (const [k, e] of set.entries()) {
    const rec = ctx.recorder();
    const t = ctx.upload(e.data.map((v) => (Number.isNaN(v) ? 0 : v)), e.shape);
    const counts = (["positive", "negative"] as const).map((mode) =>
      countZeroed(rec, ablationMask(rec, t, { ratio: 0.05, mode }))
    );
    await rec.submit();
    const [pos, neg] = await Promise.all(counts.map(async (c) => (await ctx.read(c))[0]));
    assert.deepEqual([pos, neg], [s.layers[k].ablation!.positive, s.layers[k].ablation!.negative], e.name);
  }
});

Deno.test("massChartSvg: one positive and one negative bar per block, heights proportional to the mass", () => {
  const blocks = [
    { block: "down_blocks.0", layers: 2, elements: 10, positive: 3, negative: -1 },
    { block: "mid_block", layers: 2, elements: 10, positive: 1.5, negative: -2 },
    { block: "up_blocks.<3>", layers: 2, elements: 10, positive: 0, negative: 0 },
  ];
  const svg = massChartSvg(blocks);
  assert.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
  const bars = [...svg.matchAll(/<rect class="bar (positive|negative)"[^>]* height="([\d.]+)"/g)];
  assert.deepEqual(bars.map((b) => b[1]), ["positive", "negative", "positive", "negative", "positive", "negative"]);
  const h = bars.map((b) => +b[2]);
  assert.ok(Math.abs(h[0] / h[2] - 2) < 0.01 && Math.abs(h[3] / h[1] - 2) < 0.01, `bar heights ${h}`);
  assert.equal(h[4] + h[5], 0);
  assert.match(svg, /up_blocks\.&#60;3&#62;/, "labels are escaped");
  assert.doesNotMatch(svg, /NaN|undefined/);
});

// ---- the page in Chromium ----

const CI = Deno.env.get("CI") === "true";
const chromiumPath = await findChromium();
if (!chromiumPath && !CI) {
  console.warn("%cSKIPPING report browser test: no Chromium (set CHROMIUM_PATH)", "color: yellow");
}

/** What the page shows (evaluated in Chromium; a string, since Deno's type checking has no DOM). */
const PAGE_PROBE = `(() => {
  const bars = (sel) => [...document.querySelectorAll(sel)].map((r) => r.getBBox().height);
  return {
    title: document.title,
    h1: document.querySelector("h1")?.textContent,
    svgWidth: document.querySelector("svg.mass-chart")?.getBoundingClientRect().width ?? 0,
    positive: bars("svg.mass-chart rect.bar.positive"),
    negative: bars("svg.mass-chart rect.bar.negative"),
    blocks: [...document.querySelectorAll("svg.mass-chart g.block")].map((g) => g.getAttribute("data-block")),
    layerRows: document.querySelectorAll("table.layers tbody tr").length,
    details: document.querySelectorAll("details.layer").length,
  };
})()`;
interface PageProbe {
  title: string;
  h1: string;
  svgWidth: number;
  positive: number[];
  negative: number[];
  blocks: string[];
  layerRows: number;
  details: number;
}

Deno.test({
  name: "report: score file → summary → index.html loads in Chromium without errors and shows the chart",
  ignore: !chromiumPath && !CI,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    if (!chromiumPath) throw new Error("no Chromium (CI=true, so this fails instead of skipping)");
    const dir = await Deno.makeTempDir({ prefix: "cad_report_" });
    let browser: Browser | undefined;
    try {
      const set = scoreSet();
      await saveScores(null, `${dir}/scores.safetensors`, new Map(set.map((e) => [e.name, e])), META);
      let summary: ScoreSummary;
      {
        await using f = await openScores(`${dir}/scores.safetensors`);
        summary = await summarizeScores(f.entries(), { meta: f.meta, topN: 8 });
      }
      const files = await writeCadReport(`${dir}/report`, summary);
      assert.deepEqual(Object.keys(files).sort(), ["attribution_mass.svg", "index.html", "summary.json"]);
      assert.deepEqual(JSON.parse(await Deno.readTextFile(files["summary.json"])), summary);
      const html = await Deno.readTextFile(files["index.html"]);
      assert.equal(html, cadReportHtml(summary));
      const outside = html.replaceAll(`xmlns="http://www.w3.org/2000/svg"`, "");
      assert.doesNotMatch(outside, /<script|https?:\/\//, "no script, no external URL");

      browser = (await launchStaticChromium())!;
      const page = await browser.newPage();
      const { errors, requests } = watchPage(page);
      const url = pathToFileURL(files["index.html"]).href;
      await page.goto(url, { waitUntil: "load" });
      const got = await page.evaluate(PAGE_PROBE) as PageProbe;
      assert.deepEqual(errors, [], `the page reported:\n${errors.join("\n")}`);
      assert.deepEqual(requests, [url], "the page fetched nothing but itself");
      assert.equal(got.title, `CAD attribution — ${META.concept}`);
      assert.equal(got.h1, got.title);
      assert.ok(got.svgWidth > 500, `chart width ${got.svgWidth}`);
      assert.deepEqual(got.blocks, summary.blocks.map((b) => b.block));
      assert.equal(got.positive.length, summary.blocks.length);
      assert.equal(got.negative.length, summary.blocks.length);
      const k = summary.blocks.reduce((best, b, i) => (b.positive > summary.blocks[best].positive ? i : best), 0);
      assert.equal(Math.max(...got.positive), got.positive[k], "the tallest positive bar is the block with most mass");
      assert.ok(got.positive[k] > 50, `tallest bar ${got.positive[k]} px`);
      assert.equal(got.layerRows, summary.layers.length);
      assert.equal(got.details, summary.layers.length);

      // the standalone SVG parses as an image document
      const svgPage = await browser.newPage();
      const svgWatch = watchPage(svgPage);
      await svgPage.goto(pathToFileURL(files["attribution_mass.svg"]).href, { waitUntil: "load" });
      const svgDoc = await svgPage.evaluate(`({
        root: document.documentElement.tagName,
        parseError: document.getElementsByTagName("parsererror").length,
        bars: document.querySelectorAll("rect.bar").length,
      })`);
      assert.deepEqual(svgWatch.errors, []);
      assert.deepEqual(svgDoc, { root: "svg", parseError: 0, bars: 2 * summary.blocks.length });
      if (Deno.env.get("CAD_REPORT_SCREENSHOT")) {
        await page.setViewportSize({ width: 1200, height: 900 });
        await page.screenshot({ path: Deno.env.get("CAD_REPORT_SCREENSHOT")!, fullPage: false });
      }
    } finally {
      await browser?.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
