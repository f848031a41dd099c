/**
 * The SAE workflow end to end from the command line on the tiny pipeline, checking results rather than exit codes:
 * `sae collect` (rows in the manifest), `sae train` (the saved SAE's tensors and config), `sae explain` (a feature
 * browser that loads in Chromium without errors), and `generate --sae … --region top-left` (the steered image
 * changes more inside its region than outside).
 */
import assert from "assert";
import type { Browser } from "playwright-core";
import { readManifest } from "../src/io/activation_store.ts";
import { readPng } from "../src/io/png.ts";
import { openSafetensorsFile } from "../src/io/safetensors_file.ts";
import { launchStaticChromium, openFilePage } from "./_chromium.ts";
import { gpuTest } from "./_gpu.ts";
import { runCli } from "./_cli.ts";

const PIPE = new URL("../../shared/fixtures/sd-tiny-pipeline/", import.meta.url).pathname;
const HOOK = "up_blocks.1.attentions.0.delta"; // 64 channels on a 4×4 grid in the tiny U-Net
const PROMPTS = [
  "a photo of a dog",
  "a red car on a road",
  "a painting of a house",
  "a cat on a sofa",
  "a bowl of fruit",
  "a mountain lake at dawn",
];

async function cli(...args: string[]): Promise<string> {
  const r = await runCli(args);
  assert.equal(r.code, 0, `cli ${args.slice(0, 2).join(" ")} failed:\n${r.stderr}\n${r.stdout}`);
  return r.stdout;
}

/** Mean absolute RGB change per pixel inside and outside the top-left quadrant. */
function quadrantChange(a: Uint32Array, b: Uint32Array, w: number, h: number): { inside: number; outside: number } {
  let inside = 0, outside = 0, nIn = 0, nOut = 0;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const p = a[y * w + x], q = b[y * w + x];
      let d = 0;
      for (let c = 0; c < 3; c++) d += Math.abs(((p >> (8 * c)) & 255) - ((q >> (8 * c)) & 255));
      if (y < h / 2 && x < w / 2) inside += d, nIn++;
      else outside += d, nOut++;
    }
  }
  return { inside: inside / nIn, outside: outside / nOut };
}

gpuTest("SAE end to end on sd-tiny-pipeline: collect → train → explain → steer, from the CLI", async () => {
  const dir = await Deno.makeTempDir({ prefix: "diffscope-sae-e2e-" });
  let browser: Browser | undefined;
  try {
    // 1. collect: 6 prompts × 3 steps × 16 positions, cond half
    await Deno.writeTextFile(`${dir}/prompts.txt`, PROMPTS.join("\n") + "\n");
    const store = `${dir}/store`;
    await cli(
      "sae",
      "collect",
      "--model",
      PIPE,
      "--prompts",
      `${dir}/prompts.txt`,
      "--out",
      store,
      "--hook",
      HOOK,
      "--at-steps",
      "0,1,2",
      "--steps",
      "3",
      "--quiet",
    );
    const m = (await readManifest(store))!;
    assert.equal(m.hook, HOOK);
    assert.equal(m.d, 64);
    assert.deepEqual(m.grid, [4, 4]);
    assert.equal(m.rows, PROMPTS.length * 3 * 16, "rows = prompts × kept steps × positions");
    assert.equal(m.shards.reduce((a, s) => a + s.rows, 0), m.rows);

    // 2. train: a 128-latent k = 4 SAE on the store
    const sae = `${dir}/sae.safetensors`;
    await cli(
      "sae",
      "train",
      "--data",
      store,
      "--out",
      sae,
      "--n-latents",
      "128",
      "--k",
      "4",
      "--batch",
      "48",
      "--steps",
      "60",
      "--lr",
      "1e-3",
      "--metrics-every",
      "20",
      "--quiet",
    );
    {
      await using st = await openSafetensorsFile(sae);
      const shapes = Object.fromEntries(["W_enc", "b_enc", "W_dec", "b_pre"].map((n) => [n, st.info(n).shape]));
      assert.deepEqual(shapes, { W_enc: [128, 64], b_enc: [128], W_dec: [64, 128], b_pre: [64] });
      const config = JSON.parse(st.metadata.config);
      assert.equal(config.k, 4);
      assert.equal(config.hook, HOOK, "the SAE remembers its hook point (steering defaults to it)");
      assert.ok((await st.readF32("W_dec")).every(Number.isFinite));
    }

    // 3. explain: features.json and a browser page that loads without errors
    await cli("sae", "explain", "--sae", sae, "--data", store, "--out", `${dir}/browser`, "--top", "3", "--quiet");
    const fj = JSON.parse(await Deno.readTextFile(`${dir}/browser/features.json`));
    const fired = fj.features.filter((f: { count: number }) => f.count > 0);
    assert.ok(fired.length >= 4, `${fired.length} features fired`);
    const counts = fj.features.reduce((a: number, f: { count: number }) => a + f.count, 0);
    assert.ok(counts > 0 && counts <= m.rows * 4, `${counts} firings over ${m.rows} rows with k = 4`);
    browser = await launchStaticChromium() ?? undefined;
    if (browser) {
      const { page, errors } = await openFilePage(browser, `${dir}/browser/index.html`);
      const sections = await page.evaluate("document.querySelectorAll('section.feature').length");
      assert.deepEqual(errors, [], `the page reported:\n${errors.join("\n")}`);
      assert.equal(sections, fired.length);
    }

    // 4. steer the most frequent feature into the top-left quadrant, at every step
    const top = [...fired].sort((a: { count: number }, b: { count: number }) => b.count - a.count)[0].id;
    const base = ["generate", "--model", PIPE, "--prompt", PROMPTS[0], "--steps", "3", "--seed", "7", "--quiet"];
    await cli(...base, "--out", `${dir}/plain.png`);
    await cli(
      ...base,
      "--sae",
      sae,
      "--feature",
      String(top),
      "--strength",
      "8",
      "--region",
      "top-left",
      "--out",
      `${dir}/steered.png`,
    );
    const plain = await readPng(`${dir}/plain.png`), steered = await readPng(`${dir}/steered.png`);
    const change = quadrantChange(plain.pixels, steered.pixels, plain.width, plain.height);
    assert.ok(change.inside > 0, "the steered image differs");
    assert.ok(
      change.inside > change.outside,
      `steering into the top-left changes it more (${change.inside.toFixed(2)}) than the rest (${
        change.outside.toFixed(2)
      })`,
    );
  } finally {
    await browser?.close();
    await Deno.remove(dir, { recursive: true });
  }
});
