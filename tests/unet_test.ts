/**
 * U-Net parity with diffusers v0.25 on the tiny SD-layout fixture: the output and all 136 captured module
 * activations, and the hook semantics of the acceptance list.
 */
import assert from "assert";
import { gpuTest } from "./_gpu.ts";
import { openSafetensorsFile } from "../src/io/safetensors_file.ts";
import { parseUNetConfig } from "../src/models/unet/config.ts";
import { safetensorsSource, unetFromSource } from "../src/models/unet/load.ts";
import type { UNet2DConditionModel } from "../src/models/unet/model.ts";
import { Hooks } from "../src/hooks/hooks.ts";
import type { GpuContext, Tensor } from "../src/gpu/mod.ts";
import { relL2 } from "../src/ref/compare.ts";

const FIX = new URL("../../shared/fixtures/", import.meta.url);
const tinyCfg = JSON.parse(await Deno.readTextFile(new URL("unet-sd1-tiny.json", FIX))).config;
const st = await openSafetensorsFile(new URL("unet-sd1-tiny.safetensors", FIX));
const ACTS = st.names.filter((n) => n.startsWith("act/")).map((n) => n.slice(4));

let cached:
  | { model: UNet2DConditionModel; inputs: { sample: Tensor; timesteps: Tensor; encoderHiddenStates: Tensor } }
  | null = null;
async function setup(ctx: GpuContext) {
  if (cached) return cached;
  const model = await unetFromSource(ctx, parseUNetConfig(tinyCfg), safetensorsSource(st, "param/"));
  const up = async (name: string) => ctx.upload(await st.readF32(name), st.info(name).shape, "f32", name);
  const ts = await st.readI32("input/timesteps");
  cached = {
    model,
    inputs: {
      sample: await up("input/sample"),
      timesteps: ctx.upload(Float32Array.from(ts), [ts.length]),
      encoderHiddenStates: await up("input/encoder_hidden_states"),
    },
  };
  return cached;
}

async function run(ctx: GpuContext, hooks?: Hooks, step = 0): Promise<Float32Array> {
  const { model, inputs } = await setup(ctx);
  const rec = ctx.recorder("unet");
  const out = model.forward(rec, inputs, { hooks, step, cfg: true });
  await rec.submit();
  const data = await ctx.readF32(out);
  ctx.release(out);
  return data;
}

gpuTest("U-Net matches diffusers: output/sample and all 136 module activations (rel L2 < 1e-4)", async (ctx) => {
  assert.equal(ACTS.length, 136);
  const hooks = new Hooks();
  const caps = ACTS.map((p) => hooks.capture(p));
  const out = await run(ctx, hooks);
  const errors: [string, number][] = [["output/sample", relL2(out, await st.readF32("output/sample"))]];
  for (const c of caps) {
    const [r] = await c.read(ctx);
    const want = await st.readF32(`act/${c.path}`);
    assert.equal(
      r.data.length,
      want.length,
      `${c.path}: ${r.record.tensor.shape} vs ${st.info(`act/${c.path}`).shape}`,
    );
    errors.push([c.path, relL2(r.data, want)]);
    c.release(ctx);
  }
  const bad = errors.filter(([, e]) => !(e < 1e-4));
  const worst = errors.reduce((a, b) => (b[1] > a[1] ? b : a));
  console.log(`worst: ${worst[0]} ${worst[1].toExponential(2)}; output ${errors[0][1].toExponential(2)}`);
  assert.deepEqual(bad, [], `over tolerance: ${bad.map(([p, e]) => `${p} ${e.toExponential(2)}`).join(", ")}`);
});

gpuTest("hook: +c at mid_block.attentions.0, step 0, cond half only", async (ctx) => {
  const c = 0.75;
  const watch = ["down_blocks.3", "mid_block.resnets.0", "mid_block.attentions.0"];
  const base = new Hooks();
  const baseCaps = watch.map((p) => base.capture(p));
  const baseOut = await run(ctx, base);
  const hooked = new Hooks();
  const upCaps = watch.slice(0, 2).map((p) => hooked.capture(p));
  hooked.add("mid_block.attentions.0", c, { steps: [0], half: "cond" });
  const after = hooked.capture("mid_block.attentions.0");
  const hookedOut = await run(ctx, hooked);

  const [orig] = await baseCaps[2].read(ctx);
  const [edited] = await after.read(ctx);
  const half = orig.data.length / 2;
  for (let i = 0; i < orig.data.length; i++) {
    const want = i < half ? orig.data[i] : Math.fround(orig.data[i] + c);
    if (edited.data[i] !== want) assert.fail(`mid_block.attentions.0[${i}]: ${edited.data[i]} != ${want}`);
  }
  for (let k = 0; k < 2; k++) { // upstream of the hook: bit-identical
    const [a] = await baseCaps[k].read(ctx);
    const [b] = await upCaps[k].read(ctx);
    assert.deepEqual(b.data, a.data, `${watch[k]} changed`);
  }
  // downstream: the uncond half of the output is bit-identical, the cond half changed
  const n = baseOut.length / 2;
  assert.deepEqual(hookedOut.subarray(0, n), baseOut.subarray(0, n));
  assert.ok(relL2(hookedOut.subarray(n), baseOut.subarray(n)) > 1e-3);

  const later = new Hooks();
  later.add("unet.mid_block.attentions.0", c, { steps: [1], half: "cond" });
  assert.deepEqual(await run(ctx, later, 0), baseOut, "a step-1 hook changed step 0");
  for (const cap of [...baseCaps, ...upCaps, after]) cap.release(ctx);
});

gpuTest("unknown hook names fail before anything runs", async (ctx) => {
  const hooks = new Hooks();
  hooks.add("mid_block.attentions.3", 1);
  await assert.rejects(() => run(ctx, hooks), /Unknown U-Net hook point\(s\): "mid_block\.attentions\.3"/);
});
