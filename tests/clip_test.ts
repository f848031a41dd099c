/**
 * CLIP against openai/CLIP on the tiny fixture (text and vision towers, projections, cosine), SD's tiny text encoder
 * loaded from its diffusers folder against StableDiffusionPipeline's prompt embeddings, the full-size SD v1 key list
 * and sharded token table, hooks, and error messages.
 */
import assert from "assert";
import { assertClose, gpuTest } from "./_gpu.ts";
import { openSafetensorsFile } from "../src/io/safetensors_file.ts";
import { localModelFiles } from "../src/io/model_dir.ts";
import { safetensorsSource, type TensorSource } from "../src/models/unet/load.ts";
import { CheckpointError, diffCheckpoint } from "../src/models/checkpoint.ts";
import {
  ClipConfigError,
  type ClipModel,
  clipModelFromSource,
  clipScore,
  clipTextParamShapes,
  cosineMatrix,
  loadTextEncoder,
  parseClipConfig,
  parseClipTextConfig,
  textEncoderFromSource,
} from "../src/models/clip/mod.ts";
import { Hooks } from "../src/hooks/hooks.ts";
import { embedding, rowShardSizes, uploadRowShards } from "../src/ops/embedding.ts";
import { loadTokenizer } from "../src/text/tokenizer.ts";
import { resizeRef } from "../src/ref/resize.ts";
import { randn, randu } from "../src/ref/random.ts";
import { relL2 } from "../src/ref/compare.ts";
import { numel } from "../src/gpu/tensor.ts";
import type { GpuContext } from "../src/gpu/mod.ts";

const FIX = new URL("../../shared/fixtures/", import.meta.url);
const tiny = JSON.parse(await Deno.readTextFile(new URL("clip-tiny.json", FIX))).config;
const st = await openSafetensorsFile(new URL("clip-tiny.safetensors", FIX));

/** The fixture's openai/CLIP config in transformers' `CLIPConfig` form (vision heads = width / 64, as model.py). */
const tinyConfig = parseClipConfig({
  projection_dim: tiny.embed_dim,
  text_config: {
    hidden_size: tiny.transformer_width,
    intermediate_size: 4 * tiny.transformer_width,
    num_attention_heads: tiny.transformer_heads,
    num_hidden_layers: tiny.transformer_layers,
    max_position_embeddings: tiny.context_length,
    vocab_size: tiny.vocab_size,
    hidden_act: "quick_gelu",
  },
  vision_config: {
    hidden_size: tiny.vision_width,
    intermediate_size: 4 * tiny.vision_width,
    num_attention_heads: tiny.vision_width / 64,
    num_hidden_layers: tiny.vision_layers,
    image_size: tiny.image_resolution,
    patch_size: tiny.vision_patch_size,
    hidden_act: "quick_gelu",
  },
}, "clip-tiny.json");

const ids = await st.readI32("input/input_ids");
const idShape = st.info("input/input_ids").shape as [number, number];

let cached: ClipModel | null = null;
async function model(ctx: GpuContext): Promise<ClipModel> {
  return cached ??= await clipModelFromSource(ctx, tinyConfig, safetensorsSource(st, "param/"));
}

/** The text tower's part of the fixture as a tensor source, with names removed, added or reshaped. */
function textSource(edit: (shapes: Map<string, readonly number[]>) => void = () => {}): TensorSource {
  const src = safetensorsSource(st, "param/");
  const shapes = new Map([...src.shapes].filter(([n]) => n.startsWith("text_model.")));
  edit(shapes);
  return { name: "clip-tiny.safetensors", shapes, readF32: src.readF32 };
}

gpuTest(
  "CLIP matches openai/CLIP: last_hidden_state, text_embeds, image_embeds, cosine (rel L2 < 1e-4)",
  async (ctx) => {
    const clip = await model(ctx);
    const px = ctx.upload(await st.readF32("input/pixel_values"), st.info("input/pixel_values").shape);
    const rec = ctx.recorder("clip");
    const { text, vision } = clip.forward(rec, { inputIds: { data: ids, shape: idShape }, pixelValues: px });
    await rec.submit();
    assert.deepEqual(text!.eotIndex, [...await st.readI32("output/eot_index")]);
    const errs: Record<string, number> = {};
    for (
      const [name, t] of [
        ["last_hidden_state", text!.lastHiddenState],
        ["text_embeds", text!.textEmbeds!],
        ["image_embeds", vision!.imageEmbeds!],
      ] as const
    ) {
      errs[name] = assertClose(await ctx.readF32(t), await st.readF32(`output/${name}`), 1e-4, name);
    }
    const cos = cosineMatrix(await ctx.readF32(vision!.imageEmbeds!), await ctx.readF32(text!.textEmbeds!), 2, 4, 32);
    errs.cosine = assertClose(cos, await st.readF32("output/cosine"), 1e-4, "cosine");
    console.log(Object.entries(errs).map(([k, v]) => `${k} ${v.toExponential(2)}`).join(", "));
    ctx.release(px, ...Object.values(text!).filter((t) => typeof t === "object" && "buffer" in t));
    ctx.release(vision!.lastHiddenState, vision!.pooledOutput, vision!.imageEmbeds);
  },
);

gpuTest(
  "clipScore: fixture pixels as they are, and GPU preprocessing equal to the CPU resize + normalise",
  async (ctx) => {
    const clip = await model(ctx);
    const px = ctx.upload(await st.readF32("input/pixel_values"), [2, 3, 32, 32]);
    const r = await clipScore(clip, { images: px, inputIds: { data: ids, shape: idShape } }, { preprocessed: true });
    assert.deepEqual(r.shape, [2, 4]);
    assertClose(r.cosine, await st.readF32("output/cosine"), 1e-4, "cosine");
    assert.equal(r.pairScores, undefined);

    // 4 images 45×37 in [-1, 1]: short side → 32, centre crop, normalise — against the reference resize
    const shape = [4, 3, 45, 37];
    const raw = randu(numel(shape), 11, -1, 1);
    const images = ctx.upload(raw, shape);
    const got = await clipScore(clip, { images, inputIds: { data: ids, shape: idShape } }, { range: [-1, 1] });
    const mean = [0.48145466, 0.4578275, 0.40821073], std = [0.26862954, 0.26130258, 0.27577711];
    const ref = resizeRef(raw, shape, {
      size: [32, 32],
      resizedSize: [38, 32],
      offset: [3, 0],
      channelAffine: { scale: std.map((s) => 1 / (2 * s)), shift: std.map((s, c) => (0.5 - mean[c]) / s) },
    });
    const refPx = ctx.upload(Float32Array.from(ref), [4, 3, 32, 32]);
    const want = await clipScore(clip, { images: refPx, inputIds: { data: ids, shape: idShape } }, {
      preprocessed: true,
    });
    assertClose(got.cosine, want.cosine, 1e-5, "cosine after GPU preprocessing");
    assert.equal(got.pairScores!.length, 4);
    got.pairScores!.forEach((s, i) => assert.equal(s, Math.max(100 * got.cosine[i * 4 + i], 0)));
    ctx.release(px, images, refPx);
  },
);

gpuTest(
  "SD's tiny text encoder loaded from its diffusers folder reproduces the pipeline's prompt embeddings",
  async (ctx) => {
    const files = localModelFiles(new URL("sd-tiny-pipeline", FIX).pathname);
    const te = await loadTextEncoder(ctx, files);
    const tok = await loadTokenizer(files);
    const exp = await openSafetensorsFile(new URL("sd-tiny-pipeline/expected.safetensors", FIX));
    const t = tok.tokenize(["", "a photo of a dog"]);
    const before = ctx.memory.current;
    const rec = ctx.recorder();
    const out = te.forward(rec, { data: t.inputIds, shape: t.shape });
    await rec.submit();
    assert.equal(out.textEmbeds, undefined);
    const got = await ctx.readF32(out.lastHiddenState);
    const n = got.length / 2;
    const e1 = assertClose(got.subarray(0, n), await exp.readF32("output/negative_prompt_embeds"), 1e-4, "negative");
    const e2 = assertClose(got.subarray(n), await exp.readF32("output/prompt_embeds"), 1e-4, "prompt");
    console.log(`negative_prompt_embeds ${e1.toExponential(2)}, prompt_embeds ${e2.toExponential(2)}`);
    ctx.release(out.lastHiddenState, out.pooledOutput);
    assert.equal(ctx.memory.current, before, "the forward leaked scratch buffers");
    te.release();
    await exp.close();
  },
);

Deno.test("SD v1.4 text encoder at full size: every key and shape of sd14-text-encoder.json, 123,060,480 parameters", async () => {
  const sd14 = JSON.parse(await Deno.readTextFile(new URL("sd14/sd14-text-encoder.json", FIX)));
  const cfg = parseClipTextConfig(sd14.config, "sd14-text-encoder.json");
  const expected = clipTextParamShapes(cfg);
  const found = new Map(Object.entries(sd14.state_dict_shapes as Record<string, number[]>));
  assert.deepEqual(diffCheckpoint(expected, found), { missing: [], unexpected: [], misShaped: [] });
  assert.equal([...expected.values()].reduce((s, shape) => s + numel(shape), 0), sd14.n_params);
  assert.equal(cfg.hiddenAct, "quick_gelu");
  // SD 2.x: OpenCLIP ViT-H's text tower, GELU, 23 layers, 1024 wide
  const sd2 = clipTextParamShapes(parseClipTextConfig({
    hidden_size: 1024,
    intermediate_size: 4096,
    num_attention_heads: 16,
    num_hidden_layers: 23,
    hidden_act: "gelu",
  }));
  assert.ok(
    sd2.has("text_model.encoder.layers.22.mlp.fc2.weight") && !sd2.has("text_model.encoder.layers.23.mlp.fc1.bias"),
  );
});

gpuTest(
  "SD v1's 49408×768 token table as row shards within the storage-binding limit; gathers equal the CPU's",
  async (ctx) => {
    const [V, D] = [49408, 768];
    const limit = ctx.limits.maxStorageBufferBindingSize;
    const table = randn(V * D, 5);
    const before = ctx.memory.current;
    const shards = uploadRowShards(ctx, table, [V, D], { label: "token_embedding" });
    try {
      const sizes = rowShardSizes(V, D * 4, limit);
      assert.deepEqual(shards.map((s) => s.shape[0]), sizes);
      for (const s of shards) assert.ok(s.buffer.size <= limit, `${s.label} is ${s.buffer.size} B`);
      console.log(`limit ${limit} B: ${shards.length} shards of ${sizes.join(", ")} rows`);
      if (V * D * 4 > limit) assert.ok(shards.length >= 2);
      const pick = [0, 1, sizes[0] - 1, sizes[0], sizes[0] + 1, 12345, 49406, 49407, 320, 1929];
      const rec = ctx.recorder();
      const out = embedding(rec, { table: shards, ids: { data: pick, shape: [2, 5] } });
      await rec.submit();
      const got = await ctx.readF32(out);
      pick.forEach((id, i) => assert.deepEqual(got.subarray(i * D, (i + 1) * D), table.subarray(id * D, (id + 1) * D)));
      ctx.release(out);
    } finally {
      ctx.release(...shards);
    }
    assert.equal(ctx.memory.current, before);
  },
);

gpuTest(
  "hooks: editing layers.1.self_attn.out_proj changes layer 1 on, layers before stay bit-identical",
  async (ctx) => {
    const te = await textEncoderFromSource(ctx, tinyConfig.text, textSource());
    const run = async (hooks: Hooks) => {
      const rec = ctx.recorder();
      const out = te.forward(rec, { data: ids, shape: idShape }, { hooks });
      await rec.submit();
      const data = await ctx.readF32(out.lastHiddenState);
      ctx.release(out.lastHiddenState, out.pooledOutput);
      return data;
    };
    const P = "text_encoder.text_model";
    const watch = [
      `${P}.embeddings`,
      `${P}.encoder.layers.0`,
      `${P}.encoder.layers.1.self_attn.out_proj`,
      `${P}.encoder.layers.1`,
    ];
    const read = async (c: ReturnType<Hooks["capture"]>) => {
      const [r] = await c.read(ctx);
      c.release(ctx);
      return r.data;
    };
    const base = new Hooks();
    const baseCaps = watch.map((p) => base.capture(p));
    const baseOut = await run(base);
    const edited = new Hooks();
    const upCaps = watch.slice(0, 2).map((p) => edited.capture(p));
    // a per-channel vector: a constant shift would vanish in the next LayerNorm
    const shift = randn(64, 3, 0.5);
    const shiftT = ctx.upload(shift, [64]);
    edited.add(`${P}.encoder.layers.1.self_attn.out_proj`, shiftT);
    const afterEdit = edited.capture(`${P}.encoder.layers.1.self_attn.out_proj`);
    const layer1 = edited.capture(`${P}.encoder.layers.1`);
    const editedOut = await run(edited);

    for (let k = 0; k < 2; k++) assert.deepEqual(await read(upCaps[k]), await read(baseCaps[k]), `${watch[k]} changed`);
    const o = await read(baseCaps[2]), e = await read(afterEdit);
    o.forEach((v, i) => assert.equal(e[i], Math.fround(v + shift[i % 64]), `out_proj[${i}]`));
    assert.ok(relL2(await read(layer1), await read(baseCaps[3])) > 1e-3, "layers.1 did not change");
    assert.ok(relL2(editedOut, baseOut) > 1e-3, "last_hidden_state did not change");

    // an unprefixed path belongs to the U-Net: the text encoder ignores it
    const bare = new Hooks();
    bare.add("text_model.encoder.layers.0", 1);
    assert.deepEqual(await run(bare), baseOut);
    // hooking fc1 unfuses the activation: same result
    const unfused = new Hooks();
    const act = unfused.capture(`${P}.encoder.layers.0.mlp.activation_fn`);
    assertClose(await run(unfused), baseOut, 1e-6, "unfused QuickGELU");
    assert.deepEqual(act.records[0].tensor.shape, [4, 77, 256]);
    act.release(ctx);
    const unknown = new Hooks();
    unknown.add(`${P}.encoder.layers.2`, 1);
    await assert.rejects(
      () => run(unknown),
      /Unknown CLIP text encoder hook point\(s\): "text_model\.encoder\.layers\.2"/,
    );
    ctx.release(shiftT);
    te.release();
  },
);

gpuTest(
  "loading fails with every problem in one message; position_ids is ignored; bad configs name the field",
  async (ctx) => {
    await assert.rejects(
      () =>
        textEncoderFromSource(
          ctx,
          tinyConfig.text,
          textSource((m) => {
            m.delete("text_model.encoder.layers.1.mlp.fc2.bias");
            m.set("text_model.final_layer_norm.weight", [65]);
            m.set("text_model.encoder.layers.2.mlp.fc1.weight", [256, 64]);
          }),
        ),
      (e: Error) => {
        assert.ok(e instanceof CheckpointError);
        assert.match(e.message, /Cannot load CLIP text encoder from "clip-tiny.safetensors": 3 tensor\(s\)/);
        assert.match(e.message, /missing: {4}text_model\.encoder\.layers\.1\.mlp\.fc2\.bias \(expected \[64\]\)/);
        assert.match(e.message, /unexpected: text_model\.encoder\.layers\.2\.mlp\.fc1\.weight \[256,64\]/);
        assert.match(
          e.message,
          /mis-shaped: text_model\.final_layer_norm\.weight has shape \[65\], config expects \[64\]/,
        );
        return true;
      },
    );
    const before = ctx.memory.current;
    const te = await textEncoderFromSource(
      ctx,
      tinyConfig.text,
      textSource((m) => m.set("text_model.embeddings.position_ids", [1, 77])),
      { maxShardBytes: 1 << 20 },
    );
    assert.equal(te.tokenEmbedding.length, Math.ceil((49408 * 64 * 4) / (1 << 20)));
    assert.equal(te.params.has("text_model.embeddings.position_ids"), false);
    const rec = ctx.recorder();
    assert.throws(
      () => te.forward(rec, { data: ids, shape: [2, 154] }),
      /input ids \[2,154\] have 154 tokens; 1…77 fit/,
    );
    assert.throws(
      () => te.forward(rec, { data: ids.subarray(1), shape: [4, 77] }),
      /\(307 values\); expected \[B, T\]/,
    );
    assert.throws(() => te.forward(rec, { data: [5, 49408], shape: [1, 2] }), /id 49408 at position 1 is outside/);
    te.release();
    assert.equal(ctx.memory.current, before);

    const cfg = (patch: Record<string, unknown>) => () => parseClipTextConfig({ ...patch }, "te/config.json");
    assert.throws(
      cfg({ hidden_act: "gelu_new" }),
      /"hidden_act" is "gelu_new"; diffscope supports "quick_gelu" and "gelu"/,
    );
    assert.throws(
      cfg({ hidden_size: 100, num_attention_heads: 8 }),
      /"num_attention_heads" \(8\) must divide hidden_size/,
    );
    assert.throws(cfg({ num_hidden_layers: 0 }), ClipConfigError);
    assert.throws(cfg({ layer_norm_eps: "1e-5" }), /in te\/config\.json: "layer_norm_eps" must be a positive number/);
    assert.throws(
      () => parseClipConfig({ vision_config: { image_size: 224, patch_size: 13 } }),
      /\(vision_config\): "patch_size" \(13\) must divide image_size \(224\)/,
    );
  },
);

gpuTest("vision encoder rejects pixel values of the wrong size", async (ctx) => {
  const clip = await model(ctx);
  const px = ctx.tensor([1, 3, 64, 64]);
  assert.throws(
    () => clip.forward(ctx.recorder(), { pixelValues: px }),
    /pixel values have shape \[1,3,64,64\]; expected \[B, 3, 32, 32\]/,
  );
  const hooks = new Hooks();
  hooks.add("clip.vision_model.encoder.layers.0.mlp", 1);
  hooks.add("clip.vision_model.post_layrnorm", 1);
  assert.throws(() => clip.forward(ctx.recorder(), { pixelValues: px }, { hooks }), /"vision_model\.post_layrnorm"/);
  ctx.release(px);
});
