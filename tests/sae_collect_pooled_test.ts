/**
 * `sae collect --pooled` (Revelio's image-level features) on the tiny pipeline: the CLI's rows against the same
 * steps done by hand through the library (CPU resize reference, VAE mode × scale, CPU add_noise on the schedule
 * recomputed from the betas, U-Net forward with a capture, CPU spatial mean); a resume after losing the last shard;
 * and the errors (empty folder, unreadable PNG, unknown hook, different settings on an existing store).
 */
import assert from "assert";
import { gpuTest } from "./_gpu.ts";
import { readManifest, readStore, storeImagePath, type StoreManifest } from "../src/io/activation_store.ts";
import { writeFileAtomic } from "../src/io/files.ts";
import { localModelFiles } from "../src/io/model_dir.ts";
import { readPng, writePng } from "../src/io/png.ts";
import { Hooks } from "../src/hooks/hooks.ts";
import { centerCropBox } from "../src/ops/resize.ts";
import { fill } from "../src/ops/fill.ts";
import { loadPipeline } from "../src/pipeline/stable_diffusion.ts";
import { relL2 } from "../src/ref/compare.ts";
import { resizeRef } from "../src/ref/resize.ts";
import { fromRgba8Ref } from "../src/ref/from_rgba8.ts";
import { ddpmNoiser, PooledCollector } from "../src/sae/collect_pooled.ts";
import { type CollectPooledArgs, collectPooledCommand } from "../src/cli/sae.ts";
import { type CliResult, runCli } from "./_cli.ts";

const PIPE = new URL("../../shared/fixtures/sd-tiny-pipeline/", import.meta.url).pathname;
const SIZE = 32, T = 25, SEED = 7;
// [width, height]: landscape, portrait and an odd-sized one, so the short-side resize and the crop both matter
const SHAPES: [number, number][] = [[48, 40], [40, 48], [37, 53]];

function image(w: number, h: number, k: number): Uint32Array {
  const px = new Uint32Array(w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const disc = (x - w / 3) ** 2 + (y - h / 2) ** 2 < (w / (4 + k)) ** 2;
      const r = disc ? 255 : (x * 255 / w) | 0, g = (y * 255 / h) | 0, b = ((x + y) * 37 * (k + 1)) & 255;
      px[y * w + x] = (r | (g << 8) | (b << 16) | (255 << 24)) >>> 0;
    }
  }
  return px;
}

async function cli(args: string[]): Promise<CliResult> {
  return await runCli(["sae", "collect", "--pooled", ...args, "--quiet"]);
}

gpuTest("sae collect --pooled: rows match a by-hand computation; resume after losing a shard; errors", async (ctx) => {
  const dir = await Deno.makeTempDir({ prefix: "diffscope-pooled-" });
  try {
    await Deno.mkdir(`${dir}/imgs`);
    for (let k = 0; k < SHAPES.length; k++) {
      const [w, h] = SHAPES[k];
      await writePng(`${dir}/imgs/img-${k}.png`, image(w, h, k), w, h);
    }
    await Deno.writeTextFile(`${dir}/imgs/notes.txt`, "not an image"); // ignored: not *.png
    const store = `${dir}/store`;
    const args = [
      ...["--model", PIPE, "--images", `${dir}/imgs`, "--out", store, "--hook", "mid_block"],
      ...["--timestep", String(T), "--size", String(SIZE), "--seed", String(SEED), "--batch", "2"],
      ...["--shard-prompts", "1"],
    ];
    const run = await cli(args);
    assert.equal(run.code, 0, run.stderr);
    const first = await readStore(store);
    const m = first.m;
    // mid_block of the tiny U-Net: 64 channels; one row per image; batches of 2 → shards of 2 and 1 rows, merged into
    // one block once the collection is complete
    assert.equal(m.pooled, true);
    assert.equal(m.d, 64);
    assert.equal(m.rows, 3);
    assert.equal(m.promptsDone, 3);
    assert.deepEqual(m.prompts, ["img-0.png", "img-1.png", "img-2.png"]);
    assert.deepEqual(m.grid, [1, 1]);
    assert.equal(m.timestep, T);
    assert.deepEqual(m.shards.map((s) => [s.file, s.rows, s.prompts]), [["block-1-00000.safetensors", 3, [0, 3]]]);
    assert.deepEqual([...first.index], [0, T, -1, 0, 1, T, -1, 0, 2, T, -1, 0]);
    assert.ok(first.activations.every(Number.isFinite));
    // each image's row is its own (different images, different rows)
    const row = (i: number) => first.activations.subarray(i * 64, (i + 1) * 64);
    assert.ok(relL2(row(0), row(1)) > 1e-3 && relL2(row(1), row(2)) > 1e-3);
    for (let i = 0; i < 3; i++) {
      const img = await readPng(storeImagePath(store, i));
      assert.deepEqual([img.width, img.height], [SIZE, SIZE]);
    }

    // image 0 by hand
    const pipe = await loadPipeline(ctx, localModelFiles(PIPE));
    try {
      const [w, h] = SHAPES[0];
      const src = await readPng(`${dir}/imgs/img-0.png`);
      const x = resizeRef(fromRgba8Ref(src.pixels, 1, w * h), [1, 3, h, w], {
        size: [SIZE, SIZE],
        ...centerCropBox(h, w, SIZE),
        filter: "bilinear",
        antialias: true,
      }).map((v) => v / 255 * 2 - 1);
      // the stored image is this crop, as RGBA8
      const stored = await readPng(storeImagePath(store, 0));
      for (let q = 0; q < SIZE * SIZE; q += 37) {
        const want = Math.round(Math.min(Math.max((x[q] + 1) / 2, 0), 1) * 255);
        assert.ok(Math.abs((stored.pixels[q] & 255) - want) <= 1, `stored image pixel ${q}`);
      }
      const xt = ctx.upload(Float32Array.from(x), [1, 3, SIZE, SIZE]);
      const post = await pipe.vae!.encode(xt);
      const x0 = (await ctx.readF32(post.mode())).map((v) => v * pipe.vae!.config.scalingFactor);
      post.release();
      ctx.release(xt);
      const lat = [1, 4, SIZE / 2, SIZE / 2];
      // ε: the seeded counter-based normal of image 0
      let rec = ctx.recorder();
      const epsT = fill(rec, ctx.tensor(lat), { normal: [0, 1], seed: SEED + 0 });
      await rec.submit();
      const eps = await ctx.readF32(epsT);
      // ᾱ recomputed from the scheduler config (scaled_linear betas, cumulative product) vs the schedulers'
      const cfg = JSON.parse(await Deno.readTextFile(`${PIPE}/scheduler/scheduler_config.json`));
      let abar = 1;
      for (let i = 0; i <= T; i++) {
        const s = Math.sqrt(cfg.beta_start) + (Math.sqrt(cfg.beta_end) - Math.sqrt(cfg.beta_start)) * i / 999;
        abar *= 1 - s * s;
      }
      const noiser = ddpmNoiser(pipe);
      assert.ok(Math.abs(noiser.alphasCumprod[T] / abar - 1) < 1e-6, `ᾱ_${T} ${noiser.alphasCumprod[T]} vs ${abar}`);
      assert.ok(Math.abs(pipe.scheduler.alphasCumprod[T] - noiser.alphasCumprod[T]) === 0);
      // the forward process on the CPU, with ᾱ as diffusers holds it (float32: 1 − ᾱ is sensitive to its rounding)
      const a = noiser.alphasCumprod[T];
      const noisy = x0.map((v, i) => Math.sqrt(a) * v + Math.sqrt(1 - a) * eps[i]);
      // the GPU add_noise gives the same
      rec = ctx.recorder();
      const x0T = ctx.upload(x0, lat);
      const gpuNoisy = noiser.addNoise(rec, x0T, epsT, T);
      await rec.submit();
      const noiseErr = relL2(await ctx.readF32(gpuNoisy), noisy);
      assert.ok(noiseErr < 1e-6, `addNoise vs CPU formula: ${noiseErr}`);
      ctx.release(x0T, gpuNoisy, epsT);
      // one U-Net forward with the empty prompt, mid_block captured, mean over space on the CPU
      const emb = await pipe.encodePrompts([""]);
      const hooks = new Hooks();
      const cap = hooks.capture("mid_block");
      const sample = ctx.upload(noisy, lat);
      const ts = ctx.upload(new Float32Array([T]), [1]);
      rec = ctx.recorder();
      const out = pipe.unet.forward(rec, { sample, timesteps: ts, encoderHiddenStates: emb }, { hooks, cfg: false });
      await rec.submit();
      const [{ data }] = await cap.read(ctx);
      const [, C, H, W] = cap.records[0].tensor.shape;
      assert.equal(C, 64);
      const want = new Float64Array(C);
      for (let c = 0; c < C; c++) {
        for (let q = 0; q < H * W; q++) want[c] += data[c * H * W + q] / (H * W);
      }
      cap.release(ctx);
      ctx.release(emb, sample, ts, out);
      const err = relL2(row(0), want);
      assert.ok(err < 1e-5, `pooled row 0 vs by hand: relative L2 ${err.toExponential(3)}`);

      // the library collector under a caller's allocation scopes: its cached embeddings outlive them
      ctx.beginScope();
      const col = await PooledCollector.create(pipe, { hook: "mid_block", timestep: T, size: SIZE, seed: SEED });
      ctx.release(...ctx.endScope());
      ctx.beginScope();
      const [lib1] = await col.collect([{ ...src, name: "img-0.png" }], 0);
      ctx.release(...ctx.endScope());
      const [lib2] = await col.collect([src], 0); // the batch-1 embedding, cached in the scope above
      col.release();
      assert.ok(relL2(lib1.activations, row(0)) < 1e-6, "library row 0 = the CLI's");
      assert.deepEqual(lib2.activations, lib1.activations);
    } finally {
      pipe.release();
    }

    // resume: lose the last shard and rewind the manifest to before it; a rerun restores identical rows
    const m2: StoreManifest = JSON.parse(await Deno.readTextFile(`${store}/manifest.json`));
    const last = m2.shards.pop()!;
    await Deno.remove(`${store}/${last.file}`);
    m2.promptsDone = last.prompts[0];
    m2.rows -= last.rows;
    await writeFileAtomic(`${store}/manifest.json`, new TextEncoder().encode(JSON.stringify(m2)));
    const again = await cli(args);
    assert.equal(again.code, 0, again.stderr);
    const second = await readStore(store);
    assert.equal(second.m.rows, 3);
    assert.deepEqual([...second.index], [...first.index]);
    assert.ok(relL2(second.activations, first.activations) < 1e-6, "resumed rows");
    for await (const e of Deno.readDir(store)) assert.doesNotMatch(e.name, /partial/);

    // errors, in process (they come before any model work, or right after loading)
    const base: CollectPooledArgs = {
      model: PIPE,
      imageDir: `${dir}/imgs`,
      hook: "mid_block",
      timestep: T,
      size: SIZE,
      seed: SEED,
      out: store,
      batch: 2,
      shardImages: 1,
      quiet: true,
    };
    await assert.rejects(
      () => collectPooledCommand(ctx, { ...base, timestep: 30 }),
      /holds a different collection \(its timestep differ/,
    );
    await Deno.mkdir(`${dir}/empty`);
    await assert.rejects(
      () => collectPooledCommand(ctx, { ...base, imageDir: `${dir}/empty`, out: `${dir}/s2` }),
      /empty holds no PNG images/,
    );
    await assert.rejects(
      () => collectPooledCommand(ctx, { ...base, out: `${dir}/s3`, hook: "mid_blok" }),
      /Unknown U-Net hook point "mid_blok"/,
    );
    await assert.rejects(
      () => collectPooledCommand(ctx, { ...base, out: `${dir}/s4`, size: 40 }),
      /size 40 must be a positive multiple of 16/,
    );
    await Deno.writeFile(`${dir}/imgs/img-3.png`, new TextEncoder().encode("garbage"));
    await assert.rejects(
      () => collectPooledCommand(ctx, { ...base, out: `${dir}/s5` }),
      /img-3\.png is not a readable PNG/,
    );
    // a prompt-mode store is not resumed as a pooled one
    const prompt = { ...m, pooled: undefined };
    await Deno.mkdir(`${dir}/s6`);
    await Deno.writeTextFile(`${dir}/s6/manifest.json`, JSON.stringify(prompt));
    await assert.rejects(
      () => collectPooledCommand(ctx, { ...base, out: `${dir}/s6` }),
      /not a pooled one/,
    );
    assert.equal(await readManifest(`${dir}/s2`), null);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
