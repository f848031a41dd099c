/**
 * Models loaded with weights "f16" on the tiny fixtures: the U-Net against the f32 model whose weights hold the same
 * f16 values (storage is the only difference) and against diffusers, its weight memory, F16 and BF16 files
 * uploaded without CPU conversion, gradients through frozen f16 weights, the errors, and the tiny pipeline (text
 * encoder, U-Net and VAE all f16) in process and through `generate --weights f16`.
 */
import assert from "assert";
import { gpuTest } from "./_gpu.ts";
import { openSafetensorsFile } from "../src/io/safetensors_file.ts";
import { parseUNetConfig } from "../src/models/unet/config.ts";
import { safetensorsSource, type TensorSource, unetFromSource } from "../src/models/unet/load.ts";
import type { UNet2DConditionModel } from "../src/models/unet/model.ts";
import { Tape } from "../src/autodiff/tape.ts";
import type { GpuContext, Tensor } from "../src/gpu/mod.ts";
import { relL2 } from "../src/ref/compare.ts";
import { encodeSafetensors } from "../src/safetensors/writer.ts";
import { memorySource } from "../src/safetensors/source.ts";
import { openSafetensors } from "../src/safetensors/reader.ts";
import { toF16 } from "../src/gpu/tensor.ts";
import { decode } from "fast-png";
import { parseVAEConfig, vaeFromSource } from "../src/models/vae/mod.ts";
import { localModelFiles } from "../src/io/model_dir.ts";
import { loadPipeline } from "../src/pipeline/stable_diffusion.ts";
import { runCli } from "./_cli.ts";

const FIX = new URL("../../shared/fixtures/", import.meta.url);
const tinyCfg = parseUNetConfig(JSON.parse(await Deno.readTextFile(new URL("unet-sd1-tiny.json", FIX))).config);
const st = await openSafetensorsFile(new URL("unet-sd1-tiny.safetensors", FIX));
const source = safetensorsSource(st, "param/");

/** Loads the U-Net; returns it with the bytes its parameters took. */
async function load(ctx: GpuContext, src: TensorSource, weights: "f32" | "f16") {
  const before = ctx.memory.current;
  const model = await unetFromSource(ctx, tinyCfg, src, { weights });
  return { model, bytes: ctx.memory.current - before };
}

/** A source of the values the model's parameters hold (f16 ones widened exactly), as f32. */
async function valuesOf(ctx: GpuContext, model: UNet2DConditionModel): Promise<TensorSource> {
  const data = new Map<string, Float32Array>();
  for (const [n, t] of model.params) data.set(n, await ctx.readF32(t));
  return { name: "f16-rounded", shapes: source.shapes, readF32: (n) => Promise.resolve(data.get(n)!) };
}

let inputs: { sample: Tensor; timesteps: Tensor; encoderHiddenStates: Tensor } | null = null;
async function run(ctx: GpuContext, model: UNet2DConditionModel): Promise<Float32Array> {
  if (!inputs) {
    const up = async (name: string) => ctx.upload(await st.readF32(name), st.info(name).shape, "f32", name);
    const ts = await st.readI32("input/timesteps");
    inputs = {
      sample: await up("input/sample"),
      timesteps: ctx.upload(Float32Array.from(ts), [ts.length]),
      encoderHiddenStates: await up("input/encoder_hidden_states"),
    };
  }
  const rec = ctx.recorder("unet");
  const out = model.forward(rec, inputs, { cfg: true });
  await rec.submit();
  const data = await ctx.readF32(out);
  ctx.release(out);
  return data;
}

gpuTest("U-Net with f16 weights: same output as f32 storage of the same values, close to diffusers", async (ctx) => {
  const half = await load(ctx, source, "f16");
  const full = await load(ctx, source, "f32");
  const rounded = await load(ctx, await valuesOf(ctx, half.model), "f32");
  try {
    let f16Count = 0;
    for (const [n, t] of half.model.params) {
      const matrix = n.endsWith(".weight") && (t.shape.length === 2 || t.shape.length === 4);
      assert.equal(t.dtype, matrix ? "f16" : "f32", n);
      if (matrix) f16Count++;
    }
    const got = await run(ctx, half.model);
    const same = relL2(got, await run(ctx, rounded.model));
    const vsF32 = relL2(got, await run(ctx, full.model));
    const vsDiffusers = relL2(got, await st.readF32("output/sample"));
    console.log(
      `f16 weights (${f16Count} matrices): rel L2 ${same.toExponential(2)} vs f32 storage of the f16 values, ` +
        `${vsF32.toExponential(2)} vs the f32 model, ${vsDiffusers.toExponential(2)} vs diffusers; weight bytes ` +
        `${half.bytes} f16 vs ${full.bytes} f32 (${(half.bytes / full.bytes).toFixed(3)})`,
    );
    assert.ok(same < 1e-5, `storage changed the result: ${same}`);
    assert.ok(vsDiffusers < 1e-2, `f16 weights vs diffusers: ${vsDiffusers}`);
    assert.ok(half.bytes < 0.6 * full.bytes, `f16 weights take ${half.bytes} bytes of ${full.bytes}`);
  } finally {
    half.model.release();
    full.model.release();
    rounded.model.release();
  }
});

gpuTest("f16 weights: F16 files go up as stored, BF16 and F32 ones are converted on the GPU", async (ctx) => {
  const names = [...source.shapes.keys()];
  const f32 = new Map<string, Float32Array>();
  for (const n of names) f32.set(n, await source.readF32(n));
  const file = async (dtype: "F16" | "BF16") => {
    const tensors: Record<string, { dtype: "F16" | "BF16"; shape: readonly number[]; data: Uint8Array }> = {};
    for (const n of names) {
      const x = f32.get(n)!;
      const bits = dtype === "F16"
        ? toF16(x)
        : Uint16Array.from(new Uint32Array(x.buffer, x.byteOffset, x.length), (u) => u >>> 16);
      tensors[n] = { dtype, shape: source.shapes.get(n)!, data: new Uint8Array(bits.buffer) };
    }
    return safetensorsSource(await openSafetensors(memorySource(encodeSafetensors(tensors)), `${dtype}.safetensors`));
  };
  const fromF32 = await load(ctx, source, "f16");
  const fromF16 = await load(ctx, await file("F16"), "f16");
  const fromBF16 = await load(ctx, await file("BF16"), "f16");
  try {
    // the GPU's f32 → f16 rounding is the CPU's: every matrix is bit-identical whichever file it came from
    let worstBF16 = 0;
    for (const [n, t] of fromF32.model.params) {
      if (t.dtype !== "f16") continue;
      assert.equal(fromF16.model.params.get(n)!.dtype, "f16");
      assert.deepEqual(await ctx.readF32(fromF16.model.params.get(n)!), await ctx.readF32(t), n);
      worstBF16 = Math.max(worstBF16, relL2(await ctx.readF32(fromBF16.model.params.get(n)!), f32.get(n)!));
    }
    assert.ok(worstBF16 < 1e-2, `BF16 → f16 worst rel L2 ${worstBF16}`); // bf16 keeps 8 bits of mantissa
  } finally {
    for (const m of [fromF32, fromF16, fromBF16]) m.model.release();
  }
});

gpuTest(
  "f16 weights: gradients flow to the inputs through frozen f16 weights; watching one is refused",
  async (ctx) => {
    const half = await load(ctx, source, "f16");
    const rounded = await load(ctx, await valuesOf(ctx, half.model), "f32");
    await run(ctx, half.model); // uploads the inputs
    const seed = ctx.upload(await st.readF32("output/sample"), st.info("output/sample").shape);
    try {
      const grad = async (model: UNet2DConditionModel) => {
        const tape = new Tape(ctx);
        const g = tape.watch(inputs!.sample);
        const rec = ctx.recorder("forward+backward");
        const out = model.forward(rec, inputs!, { tape });
        tape.backward(rec, [[out, seed]]);
        await rec.submit();
        const data = await ctx.readF32(g);
        ctx.release(out, g);
        return data;
      };
      const err = relL2(await grad(half.model), await grad(rounded.model));
      console.log(`d(sample) through f16 weights vs f32 storage of the same values: rel L2 ${err.toExponential(2)}`);
      assert.ok(err < 1e-5, `gradient: ${err}`);
      assert.throws(
        () => new Tape(ctx).watch(half.model.params.get("conv_in.weight")!),
        /"conv_in.weight": the parameter is stored as f16.*load the model with weights "f32"/,
      );
    } finally {
      half.model.release();
      rounded.model.release();
      ctx.release(seed);
    }
  },
);

gpuTest('weights "f16" without shader-f16 fails before anything is uploaded', async (ctx) => {
  const c = ctx as { hasF16: boolean };
  const had = c.hasF16;
  c.hasF16 = false;
  const before = ctx.memory.current;
  try {
    await assert.rejects(
      () => unetFromSource(ctx, tinyCfg, source, { weights: "f16" }),
      /Loading U-Net with weights "f16" needs .* lacks the WebGPU feature "shader-f16"/,
    );
  } finally {
    c.hasF16 = had;
  }
  assert.equal(ctx.memory.current, before);
  await assert.rejects(
    () => unetFromSource(ctx, tinyCfg, source, { weights: "bf16" as "f16" }),
    /weights must be "f32" or "f16", got "bf16"/,
  );
});

const PIPE = new URL("../../shared/fixtures/sd-tiny-pipeline/", import.meta.url).pathname;

gpuTest(
  "pipeline with f16 weights: half the weight memory, the image close to f32's; generate --weights f16",
  async (ctx) => {
    await using want = await openSafetensorsFile(`${PIPE}expected.safetensors`);
    const latents = await want.readF32("input/latents");
    const images = new Map<string, Uint32Array>();
    const bytes = new Map<string, number>();
    for (const weights of ["f32", "f16"] as const) {
      const before = ctx.memory.current;
      const pipe = await loadPipeline(ctx, localModelFiles(PIPE), { scheduler: "ddim", weights });
      bytes.set(weights, ctx.memory.current - before);
      const r = await pipe.generate({ prompt: "a photo of a dog", steps: 3, guidance: 7.5, latents });
      images.set(weights, r.pixels!);
      ctx.release(r.latents, r.image);
      pipe.release();
    }
    const maxDiff = (a: Uint32Array, b: Uint32Array) => {
      let worst = 0;
      for (let i = 0; i < a.length; i++) {
        for (let s = 0; s < 24; s += 8) worst = Math.max(worst, Math.abs(((a[i] >>> s) & 255) - ((b[i] >>> s) & 255)));
      }
      return worst;
    };
    const inProcess = maxDiff(images.get("f16")!, images.get("f32")!);
    // the CLI path: --weights reaches every model
    const dir = await Deno.makeTempDir();
    try {
      const run = (extra: string[]) => runCli(["generate", "--model", PIPE, ...extra]);
      const bad = await run(["--prompt", "x", "--weights", "bf16"]);
      assert.notEqual(bad.code, 0);
      assert.match(bad.stderr, /--weights must be f32 or f16, got "bf16"/);
      const r = await run([
        ...["--prompt", "a photo of a dog", "--steps", "3", "--scheduler", "ddim", "--weights", "f16", "--quiet"],
        ...["--latents", `${PIPE}expected.safetensors:input/latents`, "--out", `${dir}/dog.png`],
      ]);
      assert.equal(r.code, 0, r.stderr);
      const png = decode(await Deno.readFile(`${dir}/dog.png`));
      const cliPixels = new Uint32Array(png.data.buffer, png.data.byteOffset, png.width * png.height);
      const cliDiff = maxDiff(cliPixels, images.get("f32")!);
      console.log(
        `pipeline weights ${bytes.get("f16")} bytes f16 vs ${bytes.get("f32")} f32 ` +
          `(${(bytes.get("f16")! / bytes.get("f32")!).toFixed(3)}); max pixel difference to f32: ${inProcess} in ` +
          `process, ${cliDiff} through the CLI`,
      );
      // 0.65 here: the tiny text encoder's f32 token embedding is a third of its weights (SD v1.x: 4% of them)
      assert.ok(bytes.get("f16")! < 0.7 * bytes.get("f32")!);
      assert.ok(inProcess <= 8 && cliDiff <= 8, `pixels differ by ${inProcess} / ${cliDiff}`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

gpuTest(
  "VAE with f16 weights: the channel-split path (f16 weights widened for slicing) equals the plain one",
  async (ctx) => {
    const vst = await openSafetensorsFile(new URL("vae-tiny.safetensors", FIX));
    const cfg = parseVAEConfig(JSON.parse(await Deno.readTextFile(new URL("vae-tiny.json", FIX))).config);
    const vae = await vaeFromSource(ctx, cfg, safetensorsSource(vst, "param/"), { weights: "f16" });
    const latent = ctx.upload(await vst.readF32("input/latent"), vst.info("input/latent").shape);
    try {
      const run = async (maxBindingBytes?: number) => {
        const out = await vae.decode(latent, { maxBindingBytes });
        const data = await ctx.readF32(out);
        ctx.release(out);
        return data;
      };
      const plain = await run();
      const split = relL2(await run(16 * 1024), plain);
      const vsDiffusers = relL2(plain, await vst.readF32("output/decoded"));
      console.log(
        `VAE f16 weights: split vs plain ${split.toExponential(2)}, vs diffusers ${vsDiffusers.toExponential(2)}`,
      );
      assert.ok(split < 1e-5, `split vs plain: ${split}`);
      assert.ok(vsDiffusers < 1e-2, `vs diffusers: ${vsDiffusers}`);
    } finally {
      vae.release();
      ctx.release(latent);
      await vst.close();
    }
  },
);
