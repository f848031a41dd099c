import assert from "assert";
import { gpuTest } from "./_gpu.ts";
import { Hooks } from "../src/hooks/hooks.ts";
import { randn } from "../src/ref/random.ts";

const state = (step: number) => ({ step, timestep: 981 - 20 * step, cfg: true });

gpuTest("hook edits: add on the cond half only, masked; other elements bit-identical", async (ctx) => {
  const shape = [4, 3, 5, 7]; // [uncond×2, cond×2], C=3, 5×7
  const x0 = randn(4 * 3 * 35, 3);
  const mask = new Float32Array(35).map((_, i) => (i % 7 < 3 ? 1 : i % 7 === 3 ? 0.5 : 0));
  const hooks = new Hooks();
  const m = ctx.upload(mask, [5, 7]);
  hooks.add("unet.mid_block", 2.5, { half: "cond", steps: [1], mask: m });
  const scoped = hooks.scope("unet", true);
  const x = ctx.upload(x0, shape);
  for (const step of [0, 1]) {
    const rec = ctx.recorder();
    scoped.apply(rec, "mid_block", x, state(step), "nchw");
    await rec.submit();
  }
  const got = await ctx.readF32(x);
  for (let i = 0; i < x0.length; i++) {
    const b = Math.floor(i / 105), pos = i % 35, mm = b >= 2 ? mask[pos] : 0;
    const want = mm === 1 ? x0[i] + 2.5 : mm === 0 ? x0[i] : x0[i] + mm * (x0[i] + 2.5 - x0[i]);
    if (mm === 0 || mm === 1) assert.equal(got[i], Math.fround(want), `element ${i}`);
    else assert.ok(Math.abs(got[i] - want) < 1e-6, `element ${i}`);
  }
  ctx.release(x, m);
});

gpuTest("hook edits: scale, clamp, zero, set per channel on [B, tokens, C]; capture copies the half", async (ctx) => {
  const B = 2, T = 6, C = 5;
  const x0 = randn(B * T * C, 9, 3);
  const v = ctx.upload([1, 2, 3, 4, 5], [5]);
  const cases: [string, (h: Hooks) => void, (x: number, c: number) => number][] = [
    ["scale", (h) => h.scale("p", 0.5, { half: "cond" }), (x) => x * 0.5],
    ["clamp", (h) => h.clamp("p", -1, 1, { half: "cond" }), (x) => Math.min(1, Math.max(-1, x))],
    ["zero", (h) => h.zero("p", { half: "cond" }), () => 0],
    ["set", (h) => h.set("p", v, { half: "cond" }), (_x, c) => c + 1],
  ];
  for (const [name, setup, f] of cases) {
    const hooks = new Hooks();
    const cap = hooks.capture("p", { half: "cond" }); // hooks on one path run in the order they were set
    setup(hooks);
    const x = ctx.upload(x0, [B, T, C]);
    const rec = ctx.recorder();
    hooks.scope("unet", true).apply(rec, "p", x, state(0), "bnc");
    await rec.submit();
    const got = await ctx.readF32(x);
    for (let i = 0; i < x0.length; i++) {
      const want = i < T * C ? x0[i] : f(x0[i], i % C);
      assert.equal(got[i], Math.fround(want), `${name} element ${i}`);
    }
    const [c] = await cap.read(ctx);
    assert.deepEqual(c.record.tensor.shape, [1, T, C]);
    assert.deepEqual([...c.data], [...x0.subarray(T * C)]);
    cap.release(ctx);
    ctx.release(x);
  }
  ctx.release(v);
});

Deno.test("unknown hook points are named, with nearby suggestions", () => {
  const hooks = new Hooks();
  hooks.add("mid_block.attentions.7", 1);
  hooks.add("text_encoder.text_model.encoder.layers.0", 1);
  const known = new Set(["mid_block.attentions.0", "mid_block.resnets.0"]);
  assert.throws(
    () => hooks.scope("unet", true).validate(known, "U-Net"),
    /Unknown U-Net hook point\(s\): "mid_block\.attentions\.7" \(did you mean mid_block\.attentions\.0/,
  );
  assert.equal(hooks.scope("unet", true).wants("text_model.encoder.layers.0"), false);
  assert.equal(hooks.scope("text_encoder", false).wants("text_model.encoder.layers.0"), true);
});
