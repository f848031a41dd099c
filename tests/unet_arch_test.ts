import assert from "assert";
import { parseUNetConfig, UNetConfigError } from "../src/models/unet/config.ts";
import { unetArch, unetParamShapes } from "../src/models/unet/arch.ts";
import { checkCheckpoint, CheckpointError } from "../src/models/checkpoint.ts";

const FIX = new URL("../../shared/fixtures/", import.meta.url);
const sd14 = JSON.parse(await Deno.readTextFile(new URL("sd14/sd14-unet.json", FIX)));
const tiny = JSON.parse(await Deno.readTextFile(new URL("unet-sd1-tiny.json", FIX)));

function shapes(obj: Record<string, number[]>): Map<string, number[]> {
  return new Map(Object.entries(obj));
}

Deno.test("SD v1.4 U-Net: every key and shape of the real checkpoint, 859,520,964 parameters", () => {
  const expected = unetParamShapes(unetArch(parseUNetConfig(sd14.config, "sd14-unet.json")));
  checkCheckpoint("U-Net", "sd14-unet.json", expected, shapes(sd14.state_dict_shapes));
  let n = 0;
  for (const s of expected.values()) n += s.reduce((a, b) => a * b, 1);
  assert.equal(n, 859_520_964);
  assert.equal(n, sd14.n_params);
});

Deno.test("tiny fixture U-Net: the keys of its param/ tensors", async () => {
  const bytes = await Deno.readFile(new URL("unet-sd1-tiny.safetensors", FIX));
  const len = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + len)));
  const found = new Map<string, number[]>();
  for (const [k, v] of Object.entries(header)) {
    if (k.startsWith("param/")) found.set(k.slice(6), (v as { shape: number[] }).shape);
  }
  const expected = unetParamShapes(unetArch(parseUNetConfig(tiny.config)));
  checkCheckpoint("U-Net", "unet-sd1-tiny.safetensors", expected, found);
  assert.equal(found.size, 684); // channels (32,64,64,64) need fewer conv_shortcuts than SD
});

Deno.test("a checkpoint with a missing, a renamed and a mis-shaped tensor: one error naming all three", () => {
  const expected = unetParamShapes(unetArch(parseUNetConfig(sd14.config)));
  const found = shapes(structuredClone(sd14.state_dict_shapes));
  found.delete("mid_block.attentions.0.norm.bias");
  found.set(
    "down_blocks.1.attentions.0.proj_in.weight_renamed",
    found.get("down_blocks.1.attentions.0.proj_in.weight")!,
  );
  found.delete("down_blocks.1.attentions.0.proj_in.weight");
  found.set("conv_in.weight", [320, 9, 3, 3]);
  assert.throws(
    () => checkCheckpoint("U-Net", "unet/diffusion_pytorch_model.safetensors", expected, found),
    (e: Error) => {
      assert.ok(e instanceof CheckpointError);
      assert.match(e.message, /unet\/diffusion_pytorch_model\.safetensors.*4 tensor\(s\)/);
      assert.match(e.message, /missing: +mid_block\.attentions\.0\.norm\.bias \(expected \[1280\]\)/);
      assert.match(e.message, /missing: +down_blocks\.1\.attentions\.0\.proj_in\.weight/);
      assert.match(e.message, /unexpected: down_blocks\.1\.attentions\.0\.proj_in\.weight_renamed \[640,640,1,1\]/);
      assert.match(e.message, /mis-shaped: conv_in\.weight has shape \[320,9,3,3\], config expects \[320,4,3,3\]/);
      return true;
    },
  );
});

Deno.test("U-Net config: diffusers' head-count reading and SD 2.x fields", () => {
  const v1 = parseUNetConfig(sd14.config);
  assert.deepEqual(v1.numAttentionHeads, [8, 8, 8, 8]);
  const v2 = parseUNetConfig({
    ...sd14.config,
    attention_head_dim: [5, 10, 20, 20],
    cross_attention_dim: 1024,
    use_linear_projection: true,
  });
  assert.deepEqual(v2.numAttentionHeads, [5, 10, 20, 20]);
  const arch = unetArch(v2);
  assert.equal(arch.down[0].attentions[0].headDim, 64);
  const p = unetParamShapes(arch);
  assert.deepEqual(p.get("down_blocks.0.attentions.0.proj_in.weight"), [320, 320]);
  assert.deepEqual(p.get("up_blocks.3.attentions.2.transformer_blocks.0.attn2.to_k.weight"), [320, 1024]);
  // SD v1.4's original config.json omits most fields: defaults fill them
  const minimal = parseUNetConfig({ cross_attention_dim: 768, attention_head_dim: 8, sample_size: 64 });
  assert.deepEqual(unetParamShapes(unetArch(minimal)).size, 686);
});

Deno.test("U-Net config: unsupported values are rejected naming the field", () => {
  const bad: [Record<string, unknown>, RegExp][] = [
    [{ class_embed_type: "timestep" }, /"class_embed_type" is "timestep"/],
    [{ resnet_time_scale_shift: "scale_shift" }, /"resnet_time_scale_shift"/],
    [
      { down_block_types: ["CrossAttnDownBlock2D", "X", "DownBlock2D", "DownBlock2D"] },
      /"down_block_types" contains unsupported "X"/,
    ],
    [{ attention_head_dim: [8, 8] }, /"attention_head_dim" has 2 entries/],
    [{ norm_num_groups: 24 }, /"norm_num_groups"/],
    [{ cross_attention_dim: [768, 768, 768, 768] }, /"cross_attention_dim"/],
  ];
  for (const [patch, re] of bad) {
    assert.throws(() => parseUNetConfig({ ...sd14.config, ...patch }, "unet/config.json"), (e: Error) => {
      assert.ok(e instanceof UNetConfigError, String(e));
      assert.match(e.message, /unet\/config\.json/);
      assert.match(e.message, re);
      return true;
    });
  }
});
