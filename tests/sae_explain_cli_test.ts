/**
 * `sae explain` from the command line on a synthetic store (no diffusion run): features.json against what the store
 * was built to contain (a feature drawn on one quadrant, labelled by a quadrant mask), names, and the HTML browser
 * loaded from file:// in headless Chromium (skipped visibly without one; fails in CI).
 */
import assert from "assert";
import type { Browser } from "playwright-core";
import { launchStaticChromium, openFilePage } from "./_chromium.ts";
import { gpuTest } from "./_gpu.ts";
import { appendShard, readStore, type StoreManifest } from "../src/io/activation_store.ts";
import { saveSaeFile } from "../src/io/sae_files.ts";
import { writePng } from "../src/io/png.ts";
import { openStoreImages, readMasks } from "../src/io/sae_browser.ts";
import { explainCommand, parseFeatureSelection } from "../src/cli/sae_explain.ts";
import { Sae } from "../src/sae/model.ts";
import type { CollectedRows } from "../src/sae/collect.ts";
import { randn } from "../src/ref/random.ts";
import { runCli } from "./_cli.ts";

const PROMPTS = ["a photo of a dog", "a red car", "a painting of a house"];
const [H, W] = [4, 4];
const D = 4, N = 6, STEPS = [0, 2], IMG = 32;

/**
 * The store: d = 4, grid 4×4, steps 0 and 2 of three prompts (two shards), rows = small noise; prompt 0 has 3·e₀ on
 * its top-left quadrant (feature 0 of the SAE below), prompt 1 has 2·e₁ everywhere at step 2 only (feature 1).
 */
async function makeStore(dir: string): Promise<StoreManifest> {
  const m: StoreManifest = {
    format: "diffscope.activations/1",
    hook: "mid_block.attentions.0.delta",
    d: D,
    atSteps: STEPS,
    steps: 3,
    half: "cond",
    prompts: PROMPTS,
    grid: [H, W],
    images: true,
    promptsDone: 0,
    rows: 0,
    shards: [],
  };
  const batch = (p: number): CollectedRows => {
    const P = H * W;
    const acts = randn(STEPS.length * P * D, 10 + p, 0.05).map(Math.abs);
    const index: number[] = [];
    STEPS.forEach((step, s) => {
      for (let q = 0; q < P; q++) {
        index.push(p, step, 1, q);
        const r = s * P + q;
        if (p === 0 && Math.floor(q / W) < 2 && q % W < 2) acts[r * D] = 3;
        if (p === 1 && step === 2) acts[r * D + 1] = 2;
      }
    });
    const pixels = new Uint32Array(IMG * IMG).map((_, i) => (0xff000000 | (p * 80) | ((i % IMG) * 8) << 8) >>> 0);
    return {
      prompt: p,
      d: D,
      activations: acts,
      index: Int32Array.from(index),
      grid: [H, W],
      image: { pixels, width: IMG, height: IMG },
    };
  };
  await Deno.mkdir(dir, { recursive: true });
  await appendShard(dir, m, [batch(0), batch(1)]);
  await appendShard(dir, m, [batch(2)]);
  return m;
}

/** W_enc rows: e₀ … e₃ then −e₀, −e₁ (never positive on these rows); k = 2; no biases. */
async function makeSae(ctx: Parameters<Parameters<typeof gpuTest>[1]>[0], path: string): Promise<void> {
  const W_enc = new Float32Array(N * D);
  for (let i = 0; i < D; i++) W_enc[i * D + i] = 1;
  W_enc[4 * D + 0] = -1, W_enc[5 * D + 1] = -1;
  const W_dec = new Float32Array(D * N);
  for (let j = 0; j < N; j++) for (let i = 0; i < D; i++) W_dec[i * N + j] = W_enc[j * D + i];
  const sae = Sae.fromArrays(ctx, { d: D, nLatents: N, k: 2, relu: true }, {
    W_enc,
    b_enc: new Float32Array(N),
    W_dec,
    b_pre: new Float32Array(D),
  });
  await saveSaeFile(path, sae);
  sae.release();
}

async function quadrantMask(path: string, inside: (y: number, x: number) => boolean): Promise<void> {
  const px = new Uint32Array(IMG * IMG);
  for (let y = 0; y < IMG; y++) for (let x = 0; x < IMG; x++) px[y * IMG + x] = inside(y, x) ? 0xffffffff : 0xff000000;
  await writePng(path, px, IMG, IMG);
}

async function explain(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const r = await runCli(["sae", "explain", ...args]);
  return { code: r.code, out: r.stdout, err: r.stderr };
}

Deno.test("parseFeatureSelection", () => {
  assert.deepEqual(parseFeatureSelection("all"), { kind: "all" });
  assert.deepEqual(parseFeatureSelection("top-by-frequency:12"), { kind: "top", count: 12 });
  assert.deepEqual(parseFeatureSelection("top=3"), { kind: "top", count: 3 });
  assert.deepEqual(parseFeatureSelection("17, 3,17"), { kind: "ids", ids: [17, 3] });
  assert.throws(() => parseFeatureSelection("top-by-frequency:0"), /at least 1/);
  assert.throws(() => parseFeatureSelection("dogs"), /expected all, top-by-frequency:M/);
});

interface Probe {
  title: string;
  sections: number;
  ids: string[];
  images: number;
  broken: string[];
  heat: number;
  captions: string[];
  labels: string[];
  afterSearch: number;
}

const PROBE = `(async () => {
  const imgs = [...document.querySelectorAll("img")];
  await Promise.all(imgs.map((i) => i.complete ? null : new Promise((r) => (i.onload = i.onerror = r))));
  const search = document.getElementById("search");
  const out = {
    title: document.title,
    sections: document.querySelectorAll("section.feature").length,
    ids: [...document.querySelectorAll("section.feature")].map((s) => s.id),
    images: imgs.length,
    broken: imgs.filter((i) => !(i.naturalWidth > 0)).map((i) => i.src),
    heat: document.querySelectorAll("img.heat").length,
    captions: [...document.querySelectorAll("#f0 figcaption")].map((c) => c.textContent),
    labels: [...document.querySelectorAll("#f0 .label")].map((c) => c.textContent),
  };
  search.value = "Things";
  search.dispatchEvent(new Event("input"));
  out.afterSearch = [...document.querySelectorAll("section.feature")].filter((s) => !s.hidden).length;
  return out;
})()`;

gpuTest("sae explain: store → features.json, labels, names, and a browser that loads in Chromium", async (ctx) => {
  const dir = await Deno.makeTempDir({ prefix: "sae_explain_" });
  let browser: Browser | undefined;
  try {
    await makeStore(`${dir}/store`);
    await makeSae(ctx, `${dir}/sae.safetensors`);
    await Deno.mkdir(`${dir}/masks`);
    await quadrantMask(`${dir}/masks/prompt-00000.dog.png`, (y, x) => y < IMG / 2 && x < IMG / 2);
    await quadrantMask(`${dir}/masks/prompt-00000.cat.png`, (y, x) => y >= IMG / 2 && x >= IMG / 2);
    await quadrantMask(`${dir}/masks/prompt-00009.tree.png`, () => true); // no such prompt: skipped
    await Deno.writeTextFile(`${dir}/masks/.DS_Store`, "x"); // not masks: skipped silently
    await Deno.writeTextFile(`${dir}/masks/README`, "masks from a segmenter");
    await Deno.writeTextFile(`${dir}/names.json`, JSON.stringify({ "1": "red things" }));

    {
      await using src = await openStoreImages(`${dir}/store`);
      assert.equal(src.images, 6);
      assert.deepEqual(src.meta.map((m) => [m.prompt, m.step]), [[0, 0], [0, 2], [1, 0], [1, 2], [2, 0], [2, 2]]);
      // image 3 = (prompt 1, step 2): its rows, position by position, as the store holds them
      const { activations, index } = await readStore(`${dir}/store`);
      const got = await src.read([3, 0], ctx.recorder("unused")) as Float32Array;
      for (let q = 0; q < H * W; q++) {
        const r = Array.from({ length: index.length / 4 }, (_, i) => i).find((i) =>
          index[4 * i] === 1 && index[4 * i + 1] === 2 && index[4 * i + 3] === q
        )!;
        assert.deepEqual(
          Array.from(got.subarray(q * D, (q + 1) * D)),
          Array.from(activations.subarray(r * D, r * D + D)),
        );
      }
      // a .png that is not named as a mask is an error (other files were skipped above)
      await Deno.mkdir(`${dir}/badmasks`);
      await quadrantMask(`${dir}/badmasks/dog.png`, () => true);
      await assert.rejects(
        readMasks(ctx, `${dir}/badmasks`, src),
        /badmasks\/dog\.png: mask files are named prompt-NNNNN/,
      );
    }

    const r = await explain(
      "--sae",
      `${dir}/sae.safetensors`,
      "--data",
      `${dir}/store`,
      "--out",
      `${dir}/browser`,
      "--top",
      "3",
      "--features",
      "all",
      "--masks",
      `${dir}/masks`,
      "--names",
      `${dir}/names.json`,
      "--batch-rows",
      "40", // two images per batch
      "--quiet",
    );
    assert.equal(r.code, 0, r.err);
    const fj = JSON.parse(await Deno.readTextFile(`${dir}/browser/features.json`));
    assert.equal(fj.features.length, N);
    assert.equal(fj.store.rows, 6 * H * W);
    const f = (c: number) => fj.features[c];
    // feature 0 fires on prompt 0's quadrant (4 positions × 2 steps), and on noise rows where e₀ is among the top 2
    assert.ok(f(0).count >= 8, `feature 0 count ${f(0).count}`);
    assert.deepEqual(f(0).top.slice(0, 2).map((t: { image: number }) => t.image), [0, 1], "prompt 0's two steps");
    // γ = (4 quadrant positions × 3 + noise that made the top 2 elsewhere) / 16
    assert.ok(f(0).top[0].score >= 0.75 && f(0).top[0].score < 0.85, `γ ${f(0).top[0].score}`);
    assert.equal(f(0).top[0].max, 3);
    assert.deepEqual(f(0).labels.map((l: { label: string; count: number }) => [l.label, l.count]), [["dog", 2]]);
    assert.ok(f(0).labels[0].iou > 0.5);
    assert.equal(f(1).name, "red things");
    assert.equal(f(1).top[0].image, 3, "prompt 1, step 2");
    assert.equal(f(4).count, 0, "−e₀ never fires");
    assert.equal(f(5).count, 0);
    for (const c of [0, 1, 2, 3]) assert.ok(Math.abs(f(c).frequency - f(c).count / (6 * H * W)) < 1e-12);
    const fired = fj.features.filter((x: { count: number }) => x.count > 0).length;
    assert.equal(fired, 4);
    assert.match(r.out, /4 features shown of 6 \(2 never fired\) over 6 images/);

    const files = [...Deno.readDirSync(`${dir}/browser/images`)].map((e) => e.name).sort();
    assert.ok(files.includes("prompt-00000.png") && files.includes("prompt-00001.png"), `images copied: ${files}`);
    assert.ok(files.every((f) => /^prompt-\d{5}\.png$/.test(f)), `no temporary files left: ${files}`);
    assert.deepEqual(
      await Deno.readFile(`${dir}/browser/images/prompt-00001.png`),
      await Deno.readFile(`${dir}/store/images/prompt-00001.png`),
    );
    assert.equal(fj.rank, "code");

    // --rank dense (in process): γ = mean over positions of ReLU(pre) = of the rows themselves (W_enc = I on
    // features 0–3, no biases, rows ≥ 0), for every image, not only where the TopK code kept the feature
    await explainCommand(ctx, {
      sae: `${dir}/sae.safetensors`,
      data: `${dir}/store`,
      out: `${dir}/dense`,
      top: 6,
      rank: "dense",
      quiet: true,
    });
    const fd = JSON.parse(await Deno.readTextFile(`${dir}/dense/features.json`));
    assert.equal(fd.rank, "dense");
    {
      const { activations, index } = await readStore(`${dir}/store`);
      const ids = fd.images.map((m: { prompt: number; step: number }) => `${m.prompt}/${m.step}`);
      const gamma = Array.from({ length: N }, () => new Float64Array(ids.length));
      for (let r = 0; r < index.length / 4; r++) {
        const g = ids.indexOf(`${index[4 * r]}/${index[4 * r + 1]}`);
        for (let c = 0; c < D; c++) gamma[c][g] += activations[r * D + c] / (H * W);
      }
      for (let c = 0; c < D; c++) {
        const want = Array.from(gamma[c].keys()).sort((a, b) => gamma[c][b] - gamma[c][a] || a - b);
        const top = fd.features[c].top as { image: number; score: number }[];
        assert.deepEqual(top.map((t) => t.image), want, `dense top images of feature ${c}`);
        top.forEach((t) => assert.ok(Math.abs(t.score - gamma[c][t.image]) < 1e-5, `γ of ${c} on ${t.image}`));
      }
      assert.deepEqual(fd.features[4].top, [], "ReLU(−x) is 0 on these rows: no top images");
      assert.equal(fd.features[2].count, f(2).count, "counts are of the TopK code either way");
    }

    // an SAE of another width names itself and the store
    const other = Sae.fromArrays(ctx, { d: 3, nLatents: 6, k: 2, relu: true }, {
      W_enc: new Float32Array(18),
      b_enc: new Float32Array(6),
      W_dec: new Float32Array(18),
      b_pre: new Float32Array(3),
    });
    await saveSaeFile(`${dir}/sae3.safetensors`, other);
    other.release();
    await assert.rejects(
      explainCommand(ctx, { sae: `${dir}/sae3.safetensors`, data: `${dir}/store`, out: `${dir}/x3`, quiet: true }),
      /sae3\.safetensors reads rows of d = 3, but the store .*\/store \(hook mid_block\.attentions\.0\.delta\) holds rows of d = 4/,
    );

    // bad arguments name the problem
    const bad = await explain(
      "--sae",
      `${dir}/sae.safetensors`,
      "--data",
      `${dir}/store`,
      "--out",
      `${dir}/x`,
      "--at-step",
      "1",
    );
    assert.notEqual(bad.code, 0);
    assert.match(bad.err, /--at-step 1: the store .* holds steps 0, 2/);
    const one = await explain(
      "--sae",
      `${dir}/sae.safetensors`,
      "--data",
      `${dir}/store`,
      "--out",
      `${dir}/browser2`,
      "--at-step",
      "2",
      "--features",
      "1,0",
      "--rank",
      "dense",
      "--quiet",
    );
    assert.equal(one.code, 0, one.err);
    const fj2 = JSON.parse(await Deno.readTextFile(`${dir}/browser2/features.json`));
    assert.equal(fj2.store.rows, 3 * H * W);
    assert.equal(fj2.features[1].top[0].image, 1, "at step 2: images are prompts 0, 1, 2");
    assert.equal(fj2.rank, "dense");

    browser = await launchStaticChromium() ?? undefined;
    if (!browser) return;
    const { page, errors } = await openFilePage(browser, `${dir}/browser/index.html`);
    const got = await page.evaluate(PROBE) as Probe;
    if (Deno.env.get("SAE_BROWSER_SCREENSHOT")) {
      await page.setViewportSize({ width: 1100, height: 800 });
      await page.screenshot({ path: Deno.env.get("SAE_BROWSER_SCREENSHOT")!, fullPage: false });
    }
    assert.deepEqual(errors, [], `the page reported:\n${errors.join("\n")}`);
    assert.equal(got.title, "SAE features — mid_block.attentions.0.delta");
    assert.equal(got.sections, fired);
    // sorted by frequency (ties by id), as features.json counts them
    const order = fj.features.filter((x: { count: number }) => x.count > 0)
      .sort((a: { count: number; id: number }, b: { count: number; id: number }) => b.count - a.count || a.id - b.id)
      .map((x: { id: number }) => `f${x.id}`);
    assert.deepEqual(got.ids, order);
    assert.deepEqual(got.broken, [], "every image and heat map loads");
    const tops = fj.features.reduce((a: number, x: { top: unknown[] }) => a + x.top.length, 0);
    assert.equal(got.heat, tops);
    assert.equal(got.images, 2 * tops);
    assert.match(got.captions[0], /^a photo of a dog — step 0 · γ/);
    assert.deepEqual(got.labels, ["dog ×2 (IoU 0.72)"]);
    assert.equal(got.afterSearch, 1, "the search box keeps only feature 1, named 'red things'");
  } finally {
    await browser?.close();
    await Deno.remove(dir, { recursive: true });
  }
});
