/**
 * Steering wired into the tiny pipeline (3 steps, a random d = 64 SAE at up_blocks.1.attentions.0.delta, a 4×4
 * grid): a top-left spatial edit changes Δ inside the quadrant more than outside, leaves the uncond half alone and
 * changes the image; a window [1, 2) leaves step 0 bit-identical; and `generate --sae` from the CLI writes a PNG that
 * differs from the unsteered one.
 */
import assert from "assert";
import { gpuTest } from "./_gpu.ts";
import type { GpuContext } from "../src/gpu/context.ts";
import { type Capture, Hooks } from "../src/hooks/hooks.ts";
import { localModelFiles } from "../src/io/model_dir.ts";
import { encodePng, readPng } from "../src/io/png.ts";
import { saveSaeFile } from "../src/io/sae_files.ts";
import { loadPipeline, type StableDiffusionPipeline } from "../src/pipeline/stable_diffusion.ts";
import { initSaeWeights } from "../src/sae/init.ts";
import { Sae } from "../src/sae/model.ts";
import { quadrantMask, type SteerFeature, steerSae } from "../src/sae/steer.ts";
import { runCli } from "./_cli.ts";

const PIPE = new URL("../../shared/fixtures/sd-tiny-pipeline/", import.meta.url).pathname;
const HOOK = "up_blocks.1.attentions.0.delta";
const PROMPT = "a photo of a dog";

async function randomSae(ctx: GpuContext): Promise<Sae> {
  const sae = new Sae(ctx, { d: 64, nLatents: 256, k: 8, relu: true });
  const rec = ctx.recorder("init");
  initSaeWeights(rec, sae, { seed: 5 });
  await rec.submit();
  return sae;
}

/** Generates with an optional steer; captures Δ after the edit at every step, both halves. */
async function run(pipe: StableDiffusionPipeline, sae: Sae, features?: SteerFeature[], steps?: number[]) {
  const hooks = new Hooks();
  const steer = features ? steerSae(hooks, sae, { hook: HOOK, features, steps }) : undefined;
  const cap: Capture = hooks.capture(HOOK, { half: "both" }); // registered after the edit: sees its result
  const r = await pipe.generate({ prompt: PROMPT, steps: 3, guidance: 7.5, seed: 3, hooks });
  const deltas = (await cap.read(pipe.ctx)).map((c) => c.data);
  cap.release(pipe.ctx);
  steer?.release();
  const pixels = r.pixels!.slice();
  pipe.ctx.release(...new Set([r.latents, r.image]));
  return { deltas, pixels };
}

gpuTest("steerSae in the tiny pipeline: region, halves, image, window", async (ctx) => {
  const pipe = await loadPipeline(ctx, localModelFiles(PIPE));
  const sae = await randomSae(ctx);
  try {
    const base = await run(pipe, sae);
    assert.equal(base.deltas.length, 3);
    const per = 64 * 16; // one batch item of Δ: 64 channels × 4×4
    assert.equal(base.deltas[0].length, 2 * per);
    const feat = { id: 17, strength: 4, region: "top-left" as const };
    const steered = await run(pipe, sae, [feat]);
    // step 0 sees the same input in both runs: the difference is the edit alone
    const a = base.deltas[0], b = steered.deltas[0];
    for (let i = 0; i < per; i++) assert.equal(b[i], a[i], `uncond Δ element ${i} changed`);
    const inside = quadrantMask("top-left", [4, 4]);
    const change = [0, 0], count = [0, 0];
    for (let ch = 0; ch < 64; ch++) {
      for (let p = 0; p < 16; p++) {
        const d = b[per + ch * 16 + p] - a[per + ch * 16 + p];
        change[inside[p]] += d * d;
        count[inside[p]]++;
      }
    }
    const rmsIn = Math.sqrt(change[1] / count[1]), rmsOut = Math.sqrt(change[0] / count[0]);
    assert.ok(rmsIn > 0.01, `Δ changes inside the region (rms ${rmsIn})`);
    assert.ok(rmsIn > 10 * rmsOut, `Δ changes more inside (rms ${rmsIn}) than outside (rms ${rmsOut})`);
    const differs = base.pixels.some((v, i) => v !== steered.pixels[i]);
    assert.ok(differs, "the steered image differs from the unsteered one");
    // and more in the top-left quarter of the 32×32 image than in the rest (RMS over RGB)
    const img = [0, 0], n = [0, 0];
    for (let y = 0; y < 32; y++) {
      for (let x = 0; x < 32; x++) {
        const q = y < 16 && x < 16 ? 1 : 0, u = base.pixels[y * 32 + x], v = steered.pixels[y * 32 + x];
        for (let c = 0; c < 3; c++) img[q] += (((u >> (8 * c)) & 255) - ((v >> (8 * c)) & 255)) ** 2, n[q]++;
      }
    }
    const [imgIn, imgOut] = [Math.sqrt(img[1] / n[1]), Math.sqrt(img[0] / n[0])];
    assert.ok(imgIn > imgOut, `the image changes more inside (rms ${imgIn}) than outside (rms ${imgOut})`);
    // a window [1, 2): nothing changes at step 0; step 1 is edited
    const windowed = await run(pipe, sae, [feat], [1]);
    assert.deepEqual(windowed.deltas[0], base.deltas[0], "step 0 untouched");
    assert.ok(windowed.deltas[1].some((v, i) => v !== base.deltas[1][i]), "step 1 edited");
  } finally {
    sae.release();
    pipe.release();
  }
});

gpuTest(
  "cli generate --sae: the steered PNG differs from the unsteered one; bad arguments are refused",
  async (ctx) => {
    const dir = await Deno.makeTempDir({ prefix: "diffscope-steer-" });
    try {
      const sae = await randomSae(ctx);
      await saveSaeFile(`${dir}/sae.safetensors`, sae, { hook: HOOK });
      sae.release();
      const gen = async (extra: string[], out: string) => {
        const args = ["generate", "--model", PIPE, "--prompt", PROMPT, "--steps", "3", "--seed", "3"];
        const r = await runCli([...args, "--out", `${dir}/${out}`, "--quiet", ...extra]);
        return { code: r.code, out: r.stdout, err: r.stderr };
      };
      const plain = await gen([], "plain.png");
      assert.equal(plain.code, 0, plain.err);
      const steer = ["--sae", `${dir}/sae.safetensors`, "--feature", "17", "--strength", "4", "--region", "top-left"];
      const steered = await gen([...steer, "--feature", "40", "--window", "0-2"], "steered.png");
      assert.equal(steered.code, 0, steered.err);
      assert.match(steered.out, /steered at up_blocks\.1\.attentions\.0\.delta/); // the hook from the SAE's config
      const [p, s] = [await readPng(`${dir}/plain.png`), await readPng(`${dir}/steered.png`)];
      assert.equal(s.width, p.width);
      assert.ok(p.pixels.some((v, i) => v !== s.pixels[i]), "the steered PNG differs");
      // the same region drawn as a 32×32 PNG: its cell means at the 4×4 grid are the quadrant, so the same image
      const q = quadrantMask("top-left", [32, 32]);
      await Deno.writeFile(
        `${dir}/mask.png`,
        encodePng(Uint32Array.from(q, (v) => v ? 0xffffffff : 0xff000000), 32, 32),
      );
      const masked = await gen(
        [...steer.slice(0, -1), `${dir}/mask.png`, "--feature", "40", "--window", "0-2"],
        "masked.png",
      );
      assert.equal(masked.code, 0, masked.err);
      assert.deepEqual((await readPng(`${dir}/masked.png`)).pixels, s.pixels);
      // 2 regions for 3 features: refused, naming the counts
      const bad = await gen([...steer, "--feature", "1", "--feature", "2", "--region", "global"], "bad.png");
      assert.equal(bad.code, 2);
      assert.match(bad.err, /2 --region for 3 --feature/);
      // an explicit CFG half without CFG: refused (no silent switch to "both")
      const noCfg = await gen([...steer, "--guidance", "1", "--sae-half", "uncond"], "bad.png");
      assert.equal(noCfg.code, 1);
      assert.match(noCfg.err, /--sae-half uncond: guidance 1 ≤ 1 runs without CFG/);
      const noStrength = await gen(["--sae", `${dir}/sae.safetensors`, "--feature", "1"], "bad.png");
      assert.match(noStrength.err, /--sae needs --strength/);
      const range = await gen(["--sae", `${dir}/sae.safetensors`, "--feature", "256", "--strength", "1"], "bad.png");
      assert.equal(range.code, 1);
      assert.match(range.err, /id 256; the SAE has latents 0…255/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
