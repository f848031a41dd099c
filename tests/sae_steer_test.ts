/**
 * SAE steering: kernels/sae_steer.wgsl against the CPU reference on awkward shapes (C not a multiple of 4, H ≠ W,
 * both layouts, a batch range with the other half left bit-identical, soft masks, a zero code); the whole hook
 * (encode + edit, quadrant, full-grid and resized masks, a step window) against the reference encoder; errors.
 */
import assert from "assert";
import { assertClose, gpuTest } from "./_gpu.ts";
import type { GpuContext } from "../src/gpu/context.ts";
import { Hooks } from "../src/hooks/hooks.ts";
import { Sae } from "../src/sae/model.ts";
import {
  DEFAULT_STEER_HOOK,
  packSteerTable,
  quadrantMask,
  saeHalf,
  saeHook,
  steerActivation,
  steerSae,
  type SteerTableRow,
} from "../src/sae/steer.ts";
import { encodePositions } from "../src/sae/positions.ts";
import { randn, rng } from "../src/ref/random.ts";
import { saeSteerRef, type SteerRefFeature } from "../src/ref/sae_steer.ts";
import { saeForwardRef } from "../src/ref/sae.ts";
import { resizeRef } from "../src/ref/resize.ts";

/** A random code [rows, k]: distinct ids, positive descending values; `zeroImage` gets an all-zero code. */
function randomCode(rows: number, k: number, n: number, seed: number, force: number[], zeroRows: number[] = []) {
  const r = rng(seed);
  const values = new Float32Array(rows * k), indices = new Uint32Array(rows * k);
  for (let row = 0; row < rows; row++) {
    const ids = new Set<number>();
    if (row % 2 === 0) ids.add(force[row % force.length]); // every other row holds a steered latent
    while (ids.size < k) ids.add(Math.floor(r.uniform() * n));
    const vs = [...ids].map(() => 0.1 + 2 * r.uniform()).sort((a, b) => b - a);
    [...ids].forEach((id, s) => {
      indices[row * k + s] = id;
      values[row * k + s] = zeroRows.includes(row) ? 0 : vs[s];
    });
  }
  return { values, indices };
}

const cases = [
  { B: 2, C: 5, H: 3, W: 7, n: 13, k: 3, batch: [1, 2] as [number, number], layout: "nchw" as const },
  { B: 3, C: 6, H: 5, W: 4, n: 11, k: 4, batch: [0, 3] as [number, number], layout: "bnc" as const },
  { B: 4, C: 7, H: 2, W: 9, n: 17, k: 2, batch: [2, 4] as [number, number], layout: "nchw" as const },
  { B: 2, C: 64, H: 8, W: 8, n: 256, k: 20, batch: [1, 2] as [number, number], layout: "nchw" as const },
];

for (const c of cases) {
  const name = `${c.B}×${c.C}×${c.H}×${c.W} ${c.layout} batch [${c.batch}] n=${c.n} k=${c.k}`;
  gpuTest(`steerActivation vs reference: ${name}`, async (ctx) => {
    const hw = c.H * c.W, images = c.batch[1] - c.batch[0], rows = images * hw;
    const x0 = randn(c.B * c.C * hw, 1, 1);
    const wDec = randn(c.C * c.n, 2, 0.5);
    const feats: SteerTableRow[] = [
      { id: 3, mode: "spatial", maskRow: 0, strength: 40 },
      { id: 5, mode: "spatial", maskRow: 1, strength: -7.5 },
      { id: 7, mode: "global", maskRow: 0, strength: 9 },
    ];
    const masks = new Float32Array(2 * hw);
    masks.set(quadrantMask("top-left", [c.H, c.W]), 0);
    for (let p = 0; p < hw; p++) masks[hw + p] = (p % 5) / 4 - 0.1; // soft, a little outside [0, 1]
    // the last image's code is all zero: global coefficients must come out 0 there, not NaN
    const zeroRows = images > 1 ? Array.from({ length: hw }, (_, i) => (images - 1) * hw + i) : [];
    const code = randomCode(rows, c.k, c.n, 3, [3, 5, 7], zeroRows);
    const x = ctx.upload(x0, [c.B, ...(c.layout === "nchw" ? [c.C, c.H, c.W] : [hw, c.C])]);
    const tensors = [
      x,
      ctx.upload(code.values, [rows, c.k]),
      ctx.upload(code.indices, [rows, c.k], "u32"),
      ctx.upload(wDec, [c.C, c.n]),
      ctx.upload(packSteerTable(feats), [3, 4], "u32"),
      ctx.upload(masks, [2, hw]),
    ];
    const [, values, indices, W_dec, table, m] = tensors;
    const rec = ctx.recorder();
    steerActivation(rec, x, { code: { values, indices }, wDec: W_dec, table, masks: m }, {
      batch: c.batch,
      layout: c.layout,
    });
    await rec.submit();
    const got = await ctx.readF32(x);
    const want = saeSteerRef(
      x0,
      { C: c.C, hw, layout: c.layout, batch: c.batch },
      code.values,
      code.indices,
      c.k,
      wDec,
      c.n,
      feats as SteerRefFeature[],
      masks,
    );
    const per = c.C * hw;
    const lo = c.batch[0] * per, hi = c.batch[1] * per;
    // the edit itself (x' − x) within 1e-5, and every element outside the range bit-identical
    const dGot = Array.from(got.subarray(lo, hi), (v, i) => v - x0[lo + i]);
    const dWant = Array.from(want.subarray(lo, hi), (v, i) => v - x0[lo + i]);
    assertClose(dGot, dWant, 1e-5, `edit ${name}`);
    assert.ok(dWant.some((v) => Math.abs(v) > 1e-3), "the case edits something");
    for (let i = 0; i < x0.length; i++) if (i < lo || i >= hi) assert.equal(got[i], x0[i], `element ${i} outside`);
    ctx.release(...tensors);
  });
}

/** A random SAE on the GPU and its host arrays. */
function randomSae(ctx: GpuContext, d: number, n: number, k: number, seed: number) {
  const host = {
    W_enc: randn(n * d, seed, 1 / Math.sqrt(d)),
    b_enc: randn(n, seed + 1, 0.05),
    W_dec: randn(d * n, seed + 2, 1 / Math.sqrt(d)),
    b_pre: randn(d, seed + 3, 0.1),
  };
  return { sae: Sae.fromArrays(ctx, { d, nLatents: n, k, relu: true }, host), host };
}

gpuTest("steerSae hook: encode + spatial (quadrant, mask, resized image) + global, cond half, window", async (ctx) => {
  const B = 2, C = 6, H = 3, W = 5, hw = H * W, n = 24, k = 4;
  const { sae, host } = randomSae(ctx, C, n, k, 11);
  const x0 = randn(B * C * hw, 12, 1);
  const soft = Float32Array.from({ length: hw }, (_, p) => (p % W) / (W - 1)); // a left-to-right ramp
  const big = Float32Array.from({ length: 4 * hw }, (_, i) => ((i >> 1) % 3) / 2); // [2H, 2W]: cell means
  const odd = Float32Array.from({ length: 7 * 11 }, (_, i) => (i % 4) / 3); // [7, 11]: a bilinear resize
  const softT = ctx.upload(soft, [hw]), bigT = ctx.upload(big, [2 * H, 2 * W]), oddT = ctx.upload(odd, [7, 11]);
  const hooks = new Hooks();
  const features = [
    { id: 2, strength: 30, region: "bottom-right" as const },
    { id: 9, strength: 12, region: softT },
    { id: 17, strength: 5 },
    { id: 20, strength: 20, region: bigT, steps: [0] },
    { id: 23, strength: -15, region: oddT, steps: [0] },
  ];
  const steer = steerSae(hooks, sae, { hook: "mid_block.attentions.0.delta", features, steps: [1, 2] });
  const scoped = hooks.scope("unet", true);
  const x = ctx.upload(x0, [B, C, H, W]);
  const run = async (step: number) => {
    const rec = ctx.recorder();
    scoped.apply(rec, "mid_block.attentions.0.delta", x, { step, timestep: 1, cfg: true }, "nchw");
    await rec.submit();
    return await ctx.readF32(x);
  };
  // step 3 is outside every window: bit-identical
  assert.deepEqual(await run(3), x0);
  // step 1: features 0–2 act (feature 3 only at step 0); reference: encode the cond item's rows, then the edit
  const got = await run(1);
  const rowsX = new Float32Array(hw * C);
  for (let p = 0; p < hw; p++) for (let ch = 0; ch < C; ch++) rowsX[p * C + ch] = x0[(1 * C + ch) * hw + p];
  const fwd = saeForwardRef(host, rowsX, { B: hw, d: C, n, k, relu: true, kAux: 0 });
  const masks = new Float32Array(5 * hw);
  masks.set(quadrantMask("bottom-right", [H, W]), 0);
  masks.set(soft, hw);
  const feats: SteerRefFeature[] = [
    { id: 2, mode: "spatial", maskRow: 0, strength: 30 },
    { id: 9, mode: "spatial", maskRow: 1, strength: 12 },
    { id: 17, mode: "global", maskRow: 2, strength: 5 },
  ];
  const want = saeSteerRef(
    x0,
    { C, hw, layout: "nchw", batch: [1, 2] },
    fwd.values,
    fwd.indices,
    k,
    host.W_dec,
    n,
    feats,
    masks,
  );
  for (let i = 0; i < C * hw; i++) assert.equal(got[i], x0[i], `uncond element ${i}`);
  assertClose(
    Array.from(got.subarray(C * hw), (v, i) => v - x0[C * hw + i]),
    Array.from(want.subarray(C * hw), (v, i) => v - x0[C * hw + i]),
    1e-5,
    "steerSae step 1 edit",
  );
  // step 0 (on the edited x): features 3 and 4, their [6, 10] and [7, 11] masks brought to 3×5 on the GPU
  const x1 = got.slice();
  const got0 = await run(0);
  for (let p = 0; p < hw; p++) for (let ch = 0; ch < C; ch++) rowsX[p * C + ch] = x1[(1 * C + ch) * hw + p];
  const fwd0 = saeForwardRef(host, rowsX, { B: hw, d: C, n, k, relu: true, kAux: 0 });
  const masks0 = new Float32Array(5 * hw);
  for (let i = 0; i < H; i++) {
    for (let j = 0; j < W; j++) {
      const at = (y: number, c: number) => big[(2 * i + y) * 2 * W + 2 * j + c];
      masks0[3 * hw + i * W + j] = (at(0, 0) + at(0, 1) + at(1, 0) + at(1, 1)) / 4;
    }
  }
  masks0.set(resizeRef(odd, [1, 1, 7, 11], { size: [H, W], filter: "bilinear" }), 4 * hw);
  const want0 = saeSteerRef(x1, { C, hw, layout: "nchw", batch: [1, 2] }, fwd0.values, fwd0.indices, k, host.W_dec, n, [
    { id: 20, mode: "spatial", maskRow: 3, strength: 20 },
    { id: 23, mode: "spatial", maskRow: 4, strength: -15 },
  ], masks0);
  assertClose(
    Array.from(got0.subarray(C * hw), (v, i) => v - x1[C * hw + i]),
    Array.from(want0.subarray(C * hw), (v, i) => v - x1[C * hw + i]),
    1e-5,
    "steerSae step 0 edit (cell-mean and resized masks)",
  );
  steer.release();
  sae.release();
  ctx.release(x, softT, bigT, oddT);
});

gpuTest(
  "encodePositions in chunks (whole images, split images, views and copies) equals one pass bit for bit",
  async (ctx) => {
    for (const c of [{ C: 6, n: 24, layout: "nchw" as const }, { C: 64, n: 80, layout: "bnc" as const }]) {
      const B = 5, H = 3, W = 5, hw = H * W, k = 4;
      const { sae } = randomSae(ctx, c.C, c.n, k, 21);
      const shape = c.layout === "nchw" ? [B, c.C, H, W] : [B, hw, c.C];
      const x = ctx.upload(randn(B * c.C * hw, 22, 1), shape);
      const batch: [number, number] = [1, 5];
      const read = async (chunkRows?: number) => {
        const rec = ctx.recorder();
        const chunkBytes = chunkRows ? chunkRows * 4 * Math.max(c.n, c.C) : undefined;
        const code = encodePositions(rec, sae, x, { batch, layout: c.layout, chunkBytes });
        const kept = [ctx.persist(code.values), ctx.persist(code.indices)];
        await rec.submit();
        assert.deepEqual(code.values.shape, [4 * hw, k]);
        const out = [new Uint32Array((await ctx.readF32(kept[0])).buffer), await ctx.read(kept[1]) as Uint32Array];
        ctx.release(...kept);
        return out;
      };
      const [v, i] = await read();
      // 40 rows: two whole images per chunk; 7 rows: each image split 7 + 7 + 1; 1 row at a time
      for (const rows of [40, 7, 1]) {
        const [vc, ic] = await read(rows);
        assert.deepEqual(vc, v, `${c.layout} values, ${rows}-row chunks`);
        assert.deepEqual(ic, i, `${c.layout} indices, ${rows}-row chunks`);
      }
      sae.release();
      ctx.release(x);
    }
  },
);

gpuTest("steerSae: errors name the feature, the hook and the shapes", async (ctx) => {
  const { sae } = randomSae(ctx, 8, 16, 2, 1);
  assert.throws(() => steerSae(new Hooks(), sae, { features: [{ id: 16, strength: 1 }] }), /id 16.*latents 0…15/);
  assert.throws(() => steerSae(new Hooks(), sae, { features: [] }), /no features/);
  assert.throws(
    () => steerSae(new Hooks(), sae, { features: [{ id: 1, strength: 1, region: "middle" as "top-left" }] }),
    /unknown region "middle"/,
  );
  const hooks = new Hooks();
  steerSae(hooks, sae, { hook: "p", features: [{ id: 1, strength: 1 }], half: "both" });
  const x = ctx.upload(new Float32Array(2 * 5 * 4), [2, 5, 2, 2]);
  const rec = ctx.recorder();
  assert.throws(
    () => hooks.scope("unet", true).apply(rec, "p", x, { step: 0, timestep: 1, cfg: true }, "nchw"),
    /steerSae on "p": activation \[2,5,2,2\] has 5 channels; the SAE reads d = 8/,
  );
  await rec.submit();
  sae.release();
  ctx.release(x);
});

Deno.test("saeHalf: cond by default with CFG, both without; cond/uncond without CFG refused. saeHook fallbacks", () => {
  assert.equal(saeHalf(undefined, 7.5), "cond");
  assert.equal(saeHalf(undefined, 1), "both");
  assert.equal(saeHalf("uncond", 7.5), "uncond");
  assert.equal(saeHalf("both", 0.5), "both");
  assert.throws(() => saeHalf("cond", 1), /--sae-half cond: guidance 1 ≤ 1 runs without CFG/);
  assert.throws(() => saeHalf("uncond", 0, "predictLayout: half"), /predictLayout: half uncond/);
  assert.equal(saeHook("a.delta", { hook: "b.delta" }), "a.delta");
  assert.equal(saeHook(undefined, { hook: "b.delta" }), "b.delta");
  assert.equal(saeHook(undefined, { hook: 3 }), DEFAULT_STEER_HOOK);
  assert.equal(saeHook(undefined), DEFAULT_STEER_HOOK);
});
