/**
 * CAD end to end on the tiny pipeline with CI-sized settings: attribute → erase (ratio 0.05) → generate --patch;
 * and the attribution plumbing against the U-Net fixture's PyTorch gradients.
 */
import assert from "assert";
import { chromium } from "playwright-core";
import { pathToFileURL } from "node:url";
import { decode } from "fast-png";
import { gpuTest } from "./_gpu.ts";
import { findChromium, STATIC_PAGE_ARGS } from "./_chromium.ts";
import { openSafetensorsFile } from "../src/io/safetensors_file.ts";
import { openScores } from "../src/io/cad_files.ts";
import { loadAblationPatch } from "../src/io/cad_files.ts";
import { parseUNetConfig } from "../src/models/unet/config.ts";
import { safetensorsSource, unetFromSource } from "../src/models/unet/load.ts";
import { Tape } from "../src/autodiff/tape.ts";
import { selectNames } from "../src/autodiff/select.ts";
import { attributionScores } from "../src/cad/scores.ts";
import { CAD_DEFAULT_PARAMS } from "../src/cad/attribute.ts";
import { relL2 } from "../src/ref/compare.ts";
import { runCli } from "./_cli.ts";

const FIX = new URL("../../shared/fixtures/", import.meta.url);
const PIPE = new URL("sd-tiny-pipeline/", FIX).pathname;

async function cli(...args: string[]) {
  return await runCli(args);
}

gpuTest(
  "attribution plumbing: S for the FF weights equals param ⊙ grad of the fixture's PyTorch gradients",
  async (ctx) => {
    await using st = await openSafetensorsFile(new URL("unet-sd1-tiny.safetensors", FIX));
    const cfg = JSON.parse(await Deno.readTextFile(new URL("unet-sd1-tiny.json", FIX))).config;
    const unet = await unetFromSource(ctx, parseUNetConfig(cfg), safetensorsSource(st, "param/"));
    const up = async (n: string) => ctx.upload(await st.readF32(n), st.info(n).shape, "f32", n);
    const ts = await st.readI32("input/timesteps");
    const names = selectNames(unet.params.keys(), CAD_DEFAULT_PARAMS);
    assert.equal(names.length, 32);
    const tape = new Tape(ctx);
    const grads = names.map((n) => tape.watch(unet.params.get(n)!));
    const rec = ctx.recorder();
    const out = unet.forward(rec, {
      sample: await up("input/sample"),
      timesteps: ctx.upload(Float32Array.from(ts), [ts.length]),
      encoderHiddenStates: await up("input/encoder_hidden_states"),
    }, { tape });
    tape.backward(rec, [[out, await up("input/loss_weights")]]);
    const scores = names.map((n, i) => attributionScores(rec, unet.params.get(n)!, grads[i]));
    await rec.submit();
    for (let i = 0; i < names.length; i++) {
      const w = await st.readF32(`param/${names[i]}`), g = await st.readF32(`grad/${names[i]}`);
      const e = relL2(await ctx.readF32(scores[i]), w.map((v, k) => v * g[k]));
      assert.ok(e < 1e-3, `${names[i]}: ${e}`);
    }
    unet.release();
  },
);

gpuTest("CAD end to end: attribute --concept dog → erase --ratio 0.05 → generate --patch", async () => {
  const dir = await Deno.makeTempDir({ prefix: "diffscope-cad-" });
  try {
    const a = await cli(
      "attribute",
      "--concept",
      "dog",
      "--model",
      PIPE,
      "--timesteps",
      "4",
      "--out",
      `${dir}/report`,
      "--quiet",
    );
    assert.equal(a.code, 0, a.stderr);
    // the exact number the per-row positive quota must zero: Σ_rows min(⌊0.05·in⌋, #(S > 0))
    let expected = 0;
    {
      await using scores = await openScores(`${dir}/report/scores.safetensors`);
      assert.equal(scores.names.length, 32);
      for await (const s of scores.entries()) {
        const [rows, cols] = s.shape, q = Math.floor(0.05 * cols);
        for (let r = 0; r < rows; r++) {
          let pos = 0;
          for (let c = 0; c < cols; c++) if (s.data[r * cols + c] > 0) pos++;
          expected += Math.min(q, pos);
        }
      }
    }
    const e = await cli(
      "erase",
      "--concept",
      "dog",
      "--model",
      PIPE,
      "--ratio",
      "0.05",
      "--scores",
      `${dir}/report`,
      "--steps",
      "4",
      "--out",
      `${dir}/erase`,
      "--quiet",
    );
    assert.equal(e.code, 0, e.stderr);
    assert.match(e.stdout, new RegExp(`zeroed ${expected} weights`));
    const patch = await loadAblationPatch(`${dir}/erase/patch.safetensors`);
    assert.equal(patch.entries.reduce((n, x) => n + x.indices.length, 0), expected);
    const img = async (f: string) => decode(await Deno.readFile(f)).data;
    const before = await img(`${dir}/erase/before-0.png`), after = await img(`${dir}/erase/after-0.png`);
    assert.notDeepEqual(after, before, "the edit changed nothing");
    // generate applies the patch file
    const common = [
      "generate",
      "--model",
      PIPE,
      "--prompt",
      "a photo of dog",
      "--steps",
      "4",
      "--seed",
      "0",
      "--quiet",
    ];
    const g = await cli(...common, "--patch", `${dir}/erase/patch.safetensors`, "--out", `${dir}/patched.png`);
    assert.equal(g.code, 0, g.stderr);
    assert.deepEqual(await img(`${dir}/patched.png`), after);
    // the report opens in Chromium without errors
    const exe = await findChromium();
    if (!exe && Deno.env.get("CI") !== "true") {
      console.warn("%cskipping the report's browser check: no Chromium", "color: yellow");
      return;
    }
    assert.ok(exe, "no Chromium (CI needs it)");
    const browser = await chromium.launch({ executablePath: exe, args: [...STATIC_PAGE_ARGS] });
    try {
      const page = await browser.newPage();
      const errors: string[] = [];
      page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
      page.on("pageerror", (err) => errors.push(err.message));
      await page.goto(pathToFileURL(`${dir}/report/index.html`).href);
      assert.ok(await page.locator("svg").count() > 0);
      assert.deepEqual(errors, []);
    } finally {
      await browser.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
