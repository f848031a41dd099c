/**
 * U-Net backward against PyTorch autograd on the tiny SD-layout fixture: all 684 parameter gradients, the input
 * gradients and the gradients at all 136 module outputs, for loss = sum(output/sample · input/loss_weights).
 * Then: gradients requested for the FF weights only cost exactly their size and equal the full run bit for bit.
 */
import assert from "assert";
import { gpuTest } from "./_gpu.ts";
import { openSafetensorsFile } from "../src/io/safetensors_file.ts";
import { parseUNetConfig } from "../src/models/unet/config.ts";
import { safetensorsSource, unetFromSource } from "../src/models/unet/load.ts";
import { Hooks } from "../src/hooks/hooks.ts";
import { Tape } from "../src/autodiff/tape.ts";
import { selectNames } from "../src/autodiff/select.ts";
import { absL2, l2, relL2 } from "../src/ref/compare.ts";
import { byteLength, type GpuContext, type Tensor } from "../src/gpu/mod.ts";
import { randn } from "../src/ref/random.ts";

const FIX = new URL("../../shared/fixtures/", import.meta.url);
const cfg = JSON.parse(await Deno.readTextFile(new URL("unet-sd1-tiny.json", FIX))).config;
const st = await openSafetensorsFile(new URL("unet-sd1-tiny.safetensors", FIX));
const ACTS = st.names.filter((n) => n.startsWith("act_grad/")).map((n) => n.slice(9));

async function setup(ctx: GpuContext) {
  const model = await unetFromSource(ctx, parseUNetConfig(cfg), safetensorsSource(st, "param/"));
  const up = async (name: string) => ctx.upload(await st.readF32(name), st.info(name).shape, "f32", name);
  const ts = await st.readI32("input/timesteps");
  return {
    model,
    sample: await up("input/sample"),
    ehs: await up("input/encoder_hidden_states"),
    timesteps: ctx.upload(Float32Array.from(ts), [ts.length]),
    weights: await up("input/loss_weights"),
  };
}

/** Runs forward + backward with the chosen leaves watched; returns their gradients read back. */
async function gradients(
  ctx: GpuContext,
  s: Awaited<ReturnType<typeof setup>>,
  params: string[],
  inputs: boolean,
  hooks?: Hooks,
): Promise<{ grads: Map<string, Float32Array>; gradBytes: number }> {
  const tape = new Tape(ctx);
  const before = ctx.memory.current;
  const watched = new Map<string, Tensor>();
  for (const n of params) watched.set(n, tape.watch(s.model.params.get(n)!));
  if (inputs) {
    watched.set("input/sample", tape.watch(s.sample));
    watched.set("input/encoder_hidden_states", tape.watch(s.ehs));
  }
  const gradBytes = ctx.memory.current - before;
  const rec = ctx.recorder("forward+backward");
  const out = s.model.forward(rec, { sample: s.sample, timesteps: s.timesteps, encoderHiddenStates: s.ehs }, {
    tape,
    hooks,
  });
  tape.backward(rec, [[out, s.weights]]);
  await rec.submit();
  const grads = new Map<string, Float32Array>();
  for (const [n, g] of watched) grads.set(n, await ctx.readF32(g));
  ctx.release(out, ...watched.values());
  return { grads, gradBytes };
}

gpuTest(
  "U-Net gradients match PyTorch: 684 parameters, both inputs and 136 module outputs (rel L2 < 1e-3)",
  async (ctx) => {
    const s = await setup(ctx);
    const names = [...s.model.params.keys()];
    const hooks = new Hooks();
    const caps = ACTS.map((p) => hooks.captureGrad(p));
    const { grads } = await gradients(ctx, s, names, true, hooks);
    const refs = new Map<string, Float32Array>();
    for (const n of names) refs.set(n, await st.readF32(`grad/${n}`));
    const maxNorm = Math.max(...[...refs.values()].map(l2));
    const errors: [string, number][] = [];
    for (const n of names) {
      const ref = refs.get(n)!, got = grads.get(n)!;
      // gradients that are exactly zero in exact arithmetic: measured against the largest gradient norm
      errors.push([n, l2(ref) < 1e-6 * maxNorm ? absL2(got, ref, maxNorm) : relL2(got, ref)]);
    }
    for (const n of ["sample", "encoder_hidden_states"]) {
      errors.push([`grad_input/${n}`, relL2(grads.get(`input/${n}`)!, await st.readF32(`grad_input/${n}`))]);
    }
    for (const c of caps) {
      const [r] = await c.read(ctx);
      assert.ok(r, `no gradient captured at ${c.path}`);
      errors.push([`act_grad/${c.path}`, relL2(r.data, await st.readF32(`act_grad/${c.path}`))]);
      c.release(ctx);
    }
    const worst = errors.reduce((a, b) => (b[1] > a[1] ? b : a));
    console.log(`${errors.length} gradients compared; worst ${worst[0]} ${worst[1].toExponential(2)}`);
    const bad = errors.filter(([, e]) => !(e < 1e-3));
    assert.deepEqual(bad, []);
    assert.equal(errors.length, 684 + 2 + 136);
    s.model.release();
  },
);

gpuTest(
  "gradients for *.ff.net.*.weight only: gradient memory is exactly their size, values bit-identical",
  async (ctx) => {
    const s = await setup(ctx);
    const ff = selectNames(s.model.params.keys(), "*.ff.net.*.weight");
    assert.equal(ff.length, 16 * 2); // 16 transformer blocks, as in SD, two FF weights each
    const only = await gradients(ctx, s, ff, false);
    const want = ff.reduce((a, n) => a + byteLength(s.model.params.get(n)!), 0);
    assert.equal(only.gradBytes, want);
    const full = await gradients(ctx, s, [...s.model.params.keys()], true);
    for (const n of ff) assert.deepEqual(only.grads.get(n), full.grads.get(n), n);
    s.model.release();
  },
);

gpuTest("recomputing blocks in backward gives the same gradients with less activation memory", async (ctx) => {
  const s = await setup(ctx);
  // at 32×32 latents activations outweigh the tiny model's weights, as they do SD's at 64×64
  s.sample = ctx.upload(randn(2 * 4 * 32 * 32, 5), [2, 4, 32, 32]);
  s.weights = ctx.upload(randn(2 * 4 * 32 * 32, 6), [2, 4, 32, 32]);
  const names = [...s.model.params.keys()];
  const run = async (recompute: boolean) => {
    const tape = new Tape(ctx);
    const grads = names.map((n) => tape.watch(s.model.params.get(n)!));
    const gs = tape.watch(s.sample);
    ctx.resetPeak();
    const rec = ctx.recorder();
    const out = s.model.forward(rec, { sample: s.sample, timesteps: s.timesteps, encoderHiddenStates: s.ehs }, {
      tape,
      recompute,
    });
    tape.backward(rec, [[out, s.weights]]);
    await rec.submit();
    await ctx.sync();
    const peak = ctx.memory.peak;
    const data = await Promise.all([...grads, gs].map((g) => ctx.readF32(g)));
    ctx.release(out, ...grads, gs);
    return { data, peak };
  };
  const plain = await run(false), re = await run(true);
  for (let i = 0; i <= names.length; i++) {
    const e = relL2(re.data[i], plain.data[i]);
    assert.ok(e < 1e-6 || l2(plain.data[i]) === 0, `${names[i] ?? "input/sample"}: ${e}`);
  }
  console.log(
    `peak during forward+backward: ${(plain.peak / 2 ** 20).toFixed(1)} MiB plain, ${
      (re.peak / 2 ** 20).toFixed(1)
    } MiB recomputing`,
  );
  assert.ok(re.peak < plain.peak, `recompute peak ${re.peak} ≥ ${plain.peak}`);
  s.model.release();
});
