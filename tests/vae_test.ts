/**
 * AutoencoderKL parity with diffusers v0.25 on the tiny fixture, the channel-split path against the plain one,
 * legacy attention names, the posterior, error messages, and a full-size SD v1.4 decode with random weights.
 */
import assert from "assert";
import { assertClose, gpuTest } from "./_gpu.ts";
import { openSafetensorsFile } from "../src/io/safetensors_file.ts";
import { localModelFiles } from "../src/io/model_dir.ts";
import type { GpuContext, Tensor } from "../src/gpu/mod.ts";
import { numel } from "../src/gpu/tensor.ts";
import { Hooks } from "../src/hooks/hooks.ts";
import { fill } from "../src/ops/fill.ts";
import { relL2 } from "../src/ref/compare.ts";
import { CheckpointError } from "../src/models/checkpoint.ts";
import { safetensorsSource, type TensorSource } from "../src/models/unet/load.ts";
import {
  type AutoencoderKL,
  channelParts,
  loadVAE,
  LOGVAR_RANGE,
  parseVAEConfig,
  randomVAE,
  vaeArch,
  VAEConfigError,
  vaeFromSource,
  vaeParamShapes,
  type VAERunOptions,
} from "../src/models/vae/mod.ts";

const FIX = new URL("../../shared/fixtures/", import.meta.url);
const tinyCfg = JSON.parse(await Deno.readTextFile(new URL("vae-tiny.json", FIX))).config;
const sd14 = JSON.parse(await Deno.readTextFile(new URL("sd14/sd14-vae.json", FIX)));
const st = await openSafetensorsFile(new URL("vae-tiny.safetensors", FIX));
const params = safetensorsSource(st, "param/");
/** Small enough that every activation of the tiny VAE is split (32×32 layers into 8 parts, 16×16 into 4). */
const SPLIT = 16 * 1024;

let cached: { vae: AutoencoderKL; image: Tensor; latent: Tensor } | null = null;
async function setup(ctx: GpuContext) {
  if (cached) return cached;
  const up = async (n: string) => ctx.upload(await st.readF32(n), st.info(n).shape, "f32", n);
  const vae = await vaeFromSource(ctx, parseVAEConfig(tinyCfg, "vae-tiny.json"), params);
  cached = { vae, image: await up("input/image"), latent: await up("input/latent") };
  return cached;
}

async function encode(ctx: GpuContext, opts: VAERunOptions = {}): Promise<[Float32Array, Float32Array]> {
  const { vae, image } = await setup(ctx);
  const post = await vae.encode(image, opts);
  try {
    return [await ctx.readF32(post.mean), await ctx.readF32(post.logvar)];
  } finally {
    post.release();
  }
}

async function decode(ctx: GpuContext, opts: VAERunOptions = {}, vae?: AutoencoderKL): Promise<Float32Array> {
  const s = await setup(ctx);
  const out = await (vae ?? s.vae).decode(s.latent, opts);
  try {
    return await ctx.readF32(out);
  } finally {
    ctx.release(out);
  }
}

Deno.test("VAE config: defaults, SD v1.4, and errors that name the field", () => {
  const d = parseVAEConfig({});
  assert.deepEqual([d.blockOutChannels, d.layersPerBlock, d.latentChannels, d.scalingFactor], [[64], 1, 4, 0.18215]);
  const c = parseVAEConfig(sd14.config);
  assert.deepEqual(c.blockOutChannels, [128, 256, 512, 512]);
  assert.equal(c.layersPerBlock, 2);
  const bad: [Record<string, unknown>, RegExp][] = [
    [{ act_fn: "gelu" }, /"act_fn" is "gelu"/],
    [
      { block_out_channels: [32, 48], down_block_types: ["DownEncoderBlock2D", "DownEncoderBlock2D"] },
      /"norm_num_groups"/,
    ],
    [{ block_out_channels: [32, 64, 64] }, /"down_block_types" must list 3 block types/],
    [{ up_block_types: ["UpDecoderBlock2D", "AttnUpDecoderBlock2D"] }, /"up_block_types" contains unsupported "AttnUp/],
    [{ layers_per_block: 0 }, /"layers_per_block" must be an integer ≥ 1, got 0/],
    [{ scaling_factor: "x" }, /"scaling_factor" must be a positive number/],
    [{ _class_name: "AutoencoderTiny" }, /"_class_name" is "AutoencoderTiny"/],
    [{ use_quant_conv: false }, /"use_quant_conv" is false/],
  ];
  for (const [raw, re] of bad) {
    assert.throws(() => parseVAEConfig({ ...tinyCfg, ...raw }, "x/config.json"), (e: Error) => {
      assert.ok(e instanceof VAEConfigError && e.message.startsWith("Unsupported VAE config in x/config.json"));
      assert.match(e.message, re);
      return true;
    });
  }
});

Deno.test("VAE architecture: SD v1.4 names and shapes equal sd14-vae.json (248 tensors, 83,653,863 parameters)", () => {
  const shapes = vaeParamShapes(vaeArch(parseVAEConfig(sd14.config, "sd14-vae.json")));
  const want = sd14.state_dict_shapes as Record<string, number[]>;
  assert.deepEqual(Object.fromEntries(shapes), want);
  assert.equal(shapes.size, 248);
  assert.equal([...shapes.values()].reduce((s, v) => s + numel(v), 0), sd14.n_params);
  assert.equal(sd14.n_params, 83_653_863);
  // the tiny fixture's parameters, too
  const tiny = vaeParamShapes(vaeArch(parseVAEConfig(tinyCfg)));
  assert.deepEqual(new Map([...params.shapes].map(([k, v]) => [k, [...v]])), tiny);
});

Deno.test("channelParts: whole groups within the budget, as even as possible", () => {
  assert.deepEqual(channelParts([1, 128, 512, 512], 2 ** 27, 32), [128]); // exactly 128 MiB fits
  assert.deepEqual(channelParts([1, 256, 512, 512], 2 ** 27, 32), [128, 128]);
  assert.deepEqual(channelParts([1, 32, 32, 32], SPLIT, 32), new Array(8).fill(4));
  assert.deepEqual(channelParts([1, 64, 16, 16], SPLIT, 32), [16, 16, 16, 16]);
  assert.deepEqual(channelParts([1, 96, 8, 8], 64 * 4 * 40, 32), [33, 33, 30]); // groups of 3, ≤ 40 channels
  assert.throws(() => channelParts([1, 32, 64, 64], 1024, 32), /cannot be split into parts of 1024 bytes/);
});

gpuTest("VAE matches diffusers: latent mean and log-variance, decoded image (rel L2 < 1e-4)", async (ctx) => {
  const [mean, logvar] = await encode(ctx);
  const e1 = assertClose(mean, await st.readF32("output/latent_mean"), 1e-4, "latent_mean");
  const e2 = assertClose(logvar, await st.readF32("output/latent_logvar"), 1e-4, "latent_logvar");
  const e3 = assertClose(await decode(ctx), await st.readF32("output/decoded"), 1e-4, "decoded");
  console.log(`rel L2: mean ${e1.toExponential(2)}, logvar ${e2.toExponential(2)}, decoded ${e3.toExponential(2)}`);
});

gpuTest("channel-split path (16 KiB parts) equals the plain one: encode, decode, hooks", async (ctx) => {
  const [m0, l0] = await encode(ctx);
  const [m1, l1] = await encode(ctx, { maxBindingBytes: SPLIT });
  const d0 = await decode(ctx);
  const hooks = new Hooks();
  const cap = hooks.capture("vae.decoder.up_blocks.0.upsamplers.0"); // [1, 64, 32, 32]: merged for the hook
  const capAttn = hooks.capture("vae.decoder.mid_block.attentions.0.to_q"); // inside the blocked attention
  const d1 = await decode(ctx, { maxBindingBytes: SPLIT, hooks });
  const errs = [relL2(m1, m0), relL2(l1, l0), relL2(d1, d0)];
  console.log(
    `split vs plain rel L2: mean ${errs[0].toExponential(2)}, logvar ${errs[1].toExponential(2)}, ` +
      `decoded ${errs[2].toExponential(2)}`,
  );
  assert.ok(errs.every((e) => e < 1e-6), `${errs}`);
  assertClose(d1, await st.readF32("output/decoded"), 1e-4, "split decode vs diffusers");
  const plainHooks = new Hooks();
  const cap0 = plainHooks.capture("vae.decoder.up_blocks.0.upsamplers.0");
  await decode(ctx, { hooks: plainHooks });
  const [a] = await cap.read(ctx), [b] = await cap0.read(ctx), [q] = await capAttn.read(ctx);
  assert.deepEqual(a.record.tensor.shape, [1, 64, 32, 32]);
  assert.deepEqual(q.record.tensor.shape, [1, 256, 64]);
  assert.ok(relL2(a.data, b.data) < 1e-6);
  for (const c of [cap, capAttn, cap0]) c.release(ctx);
});

gpuTest("hooks: scaling decoder.conv_out doubles the image; a bad path is named; nothing leaks", async (ctx) => {
  const { vae, latent } = await setup(ctx);
  const d0 = await decode(ctx);
  const d2 = await decode(ctx, { hooks: new Hooks().scale("vae.decoder.conv_out", 2) });
  assert.ok(relL2(d2, d0.map((v) => 2 * v)) < 1e-7);
  const before = ctx.memory.current; // (the first hook edit made the context's persistent placeholder)
  await decode(ctx);
  await decode(ctx, { maxBindingBytes: SPLIT });
  await encode(ctx, { maxBindingBytes: SPLIT });
  assert.equal(ctx.memory.current, before, "every intermediate released");
  const bad = new Hooks();
  bad.capture("vae.decoder.up_blocks.0.resnet.0");
  await assert.rejects(
    () => vae.decode(latent, { hooks: bad }),
    /Unknown VAE hook point\(s\): "decoder\.up_blocks\.0\.resnet\.0"/,
  );
  // VAE hook paths carry the "vae." prefix: unprefixed ones belong to the U-Net
  const unet = new Hooks();
  const ignored = unet.capture("decoder.mid_block.attentions.0");
  assert.deepEqual(await decode(ctx, { hooks: unet }), d0);
  assert.equal(ignored.records.length, 0);
});

gpuTest("decode into a caller's recorder (one submission) gives the same image", async (ctx) => {
  const { vae, latent } = await setup(ctx);
  const d0 = await decode(ctx);
  const rec = ctx.recorder("caller");
  const out = await vae.decode(latent, { rec });
  await rec.submit();
  assert.deepEqual(await ctx.readF32(out), d0);
  ctx.release(out);
});

gpuTest("posterior: sample = mean + exp(logvar/2)·ε with seeded ε; encodeLatents/decodeLatents scale", async (ctx) => {
  const { vae, image, latent } = await setup(ctx);
  const post = await vae.encode(image);
  const rec = ctx.recorder();
  const eps = ctx.tensor(post.mean.shape);
  const s1 = post.sample(rec, 7, { eps });
  const s2 = post.sample(rec, 7);
  const s3 = post.sample(rec, 8);
  const ref = ctx.tensor(post.mean.shape);
  fill(rec, ref, { normal: [0, 1], seed: 7 });
  await rec.submit();
  const [m, lv, e, a, b, c, r] = await Promise.all(
    [post.mean, post.logvar, eps, s1, s2, s3, ref].map((t) => ctx.readF32(t)),
  );
  assert.deepEqual(e, r, "ε is fill's N(0, 1) with the seed");
  assert.ok(lv.every((v) => v >= LOGVAR_RANGE[0] && v <= LOGVAR_RANGE[1]));
  assertClose(a, m.map((v, i) => v + Math.exp(0.5 * lv[i]) * e[i]), 1e-6, "sample");
  assert.deepEqual(a, b, "same seed, same draw");
  assert.ok(relL2(c, a) > 1e-3, "another seed, another draw");
  assert.equal(post.mode(), post.mean);

  const sf = vae.config.scalingFactor;
  const z = await vae.encodeLatents(image);
  assertClose(await ctx.readF32(z), m.map((v) => v * sf), 1e-7, "encodeLatents = mode · scaling_factor");
  const zs = await vae.encodeLatents(image, { seed: 7 });
  assertClose(await ctx.readF32(zs), a.map((v) => v * sf), 1e-6, "encodeLatents(seed) = sample · scaling_factor");
  // decodeLatents(latents) = decode(latents / scaling_factor)
  const scaled = ctx.upload((await st.readF32("input/latent")).map((v) => v * sf), latent.shape);
  const img = await vae.decodeLatents(scaled);
  assertClose(await ctx.readF32(img), await st.readF32("output/decoded"), 1e-4, "decodeLatents");
  ctx.release(eps, s1, s2, s3, ref, z, zs, scaled, img);
  post.release();
});

gpuTest(
  "legacy attention names (query/key/value/proj_attn, 1×1-conv weights) load as diffusers renames them",
  async (ctx) => {
    const legacy: Record<string, string> = { to_q: "query", to_k: "key", to_v: "value", "to_out.0": "proj_attn" };
    const shapes = new Map<string, readonly number[]>(), from = new Map<string, string>();
    for (const [name, shape] of params.shapes) {
      const m = /^(\w+)\.mid_block\.attentions\.0\.(to_q|to_k|to_v|to_out\.0)\.(weight|bias)$/.exec(name);
      let n = name, s = shape;
      if (m) {
        n = name.replace(m[2], legacy[m[2]]);
        if (m[1] === "decoder" && m[3] === "weight") s = [...shape, 1, 1]; // as a 1×1 conv
      }
      shapes.set(n, s);
      from.set(n, name);
    }
    const old: TensorSource = { name: "legacy.safetensors", shapes, readF32: (n) => params.readF32(from.get(n)!) };
    assert.ok(shapes.has("decoder.mid_block.attentions.0.proj_attn.weight"));
    assert.deepEqual(shapes.get("decoder.mid_block.attentions.0.query.weight"), [64, 64, 1, 1]);
    const vae = await vaeFromSource(ctx, parseVAEConfig(tinyCfg), old);
    try {
      assert.deepEqual(await decode(ctx, {}, vae), await decode(ctx));
    } finally {
      vae.release();
    }
  },
);

gpuTest(
  "checkpoint errors list every missing, unexpected and mis-shaped tensor; input errors name the shape",
  async (ctx) => {
    const shapes = new Map(params.shapes);
    shapes.delete("decoder.conv_out.bias");
    shapes.set("decoder.extra.weight", [3]);
    shapes.set("encoder.conv_in.weight", [32, 4, 3, 3]);
    shapes.set("encoder.mid_block.attentions.0.query.weight", [64, 64, 3, 3]); // legacy name, wrong shape
    shapes.delete("encoder.mid_block.attentions.0.to_q.weight");
    const src: TensorSource = { name: "broken.safetensors", shapes, readF32: params.readF32 };
    const before = ctx.memory.current;
    await assert.rejects(() => vaeFromSource(ctx, parseVAEConfig(tinyCfg), src), (e: Error) => {
      assert.ok(e instanceof CheckpointError);
      assert.match(e.message, /^Cannot load VAE from "broken\.safetensors": 4 tensor\(s\) do not match the config/);
      assert.match(e.message, /missing: {4}decoder\.conv_out\.bias \(expected \[3\]\)/);
      assert.match(e.message, /unexpected: decoder\.extra\.weight \[3\]/);
      assert.match(
        e.message,
        /mis-shaped: encoder\.conv_in\.weight has shape \[32,4,3,3\], config expects \[32,3,3,3\]/,
      );
      assert.match(e.message, /mis-shaped: encoder\.mid_block\.attentions\.0\.to_q\.weight has shape \[64,64,3,3\]/);
      return true;
    });
    assert.equal(ctx.memory.current, before, "nothing uploaded");
    const { vae, image } = await setup(ctx);
    const wrong = ctx.tensor([1, 3, 16, 16]);
    await assert.rejects(
      () => vae.decode(wrong),
      /VAE decode: latents "tensor" is f32 \[1,3,16,16\]; expected f32 \[B, 4, H, W\]/,
    );
    await assert.rejects(
      () => vae.encode(ctx.tensor([1, 4, 32, 32])),
      /VAE encode: image .* expected f32 \[B, 3, H, W\]/,
    );
    await assert.rejects(() => vae.encode(image, { maxBindingBytes: 0 }), /maxBindingBytes must be positive/);
    await assert.rejects(
      () => vae.encode(image, { maxBindingBytes: 1024 }),
      /cannot be split into parts of 1024 bytes/,
    );
    ctx.release(wrong);
  },
);

gpuTest("loadVAE on the tiny SD pipeline folder: decodeLatents(final latents) = the pipeline's image", async (ctx) => {
  const vae = await loadVAE(ctx, localModelFiles(new URL("sd-tiny-pipeline", FIX).pathname));
  const exp = await openSafetensorsFile(new URL("sd-tiny-pipeline/expected.safetensors", FIX));
  try {
    const lat = ctx.upload(await exp.readF32("output/latents"), exp.info("output/latents").shape);
    const img = await vae.decodeLatents(lat);
    const err = assertClose(await ctx.readF32(img), await exp.readF32("output/image"), 1e-4, "output/image");
    console.log(`pipeline image rel L2 ${err.toExponential(2)}`);
    ctx.release(lat, img);
  } finally {
    vae.release();
    await exp.close();
  }
});

gpuTest(
  "SD v1.4 VAE at full size (random weights): decode [1,4,64,64] → [1,3,512,512] within the binding limit",
  async (ctx) => {
    const before = ctx.memory.current;
    const vae = await randomVAE(ctx, parseVAEConfig(sd14.config, "sd14-vae.json"), 1);
    const z = ctx.tensor([1, 4, 64, 64], "f32", "latents");
    try {
      const rec = ctx.recorder();
      fill(rec, z, { normal: [0, 1], seed: 3 });
      await rec.submit();
      ctx.resetPeak();
      const t0 = performance.now();
      const img = await vae.decode(z);
      const data = await ctx.readF32(img);
      const seconds = (performance.now() - t0) / 1000;
      ctx.release(img);
      assert.deepEqual(img.shape, [1, 3, 512, 512]);
      assert.ok(data.every(Number.isFinite));
      const rms = Math.sqrt(data.reduce((s, v) => s + v * v, 0) / data.length);
      assert.ok(rms > 1e-3 && rms < 1e3, `rms ${rms}`);
      const limit = ctx.limits.maxStorageBufferBindingSize;
      assert.ok(ctx.memory.largestBuffer <= limit, `largest buffer ${ctx.memory.largestBuffer} > ${limit}`);
      const mib = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;
      console.log(
        `full-size decode: ${seconds.toFixed(1)} s; peak ${mib(ctx.memory.peak)} (weights ${
          mib(4 * sd14.n_params)
        }), ` +
          `largest buffer ${mib(ctx.memory.largestBuffer)}`,
      );
    } finally {
      ctx.release(z);
      vae.release();
    }
    assert.equal(ctx.memory.current, before);
  },
);
