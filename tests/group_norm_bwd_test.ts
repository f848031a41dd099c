import { assertClose, gpuTest } from "./_gpu.ts";
import { fdGrad } from "./_fd.ts";
import { groupNorm, groupNormBackward } from "../src/ops/group_norm.ts";
import { groupNormBackwardRef, groupNormRef } from "../src/ref/group_norm.ts";
import { randn } from "../src/ref/random.ts";
import { numel } from "../src/gpu/tensor.ts";
import assert from "assert";

interface Case {
  shape: number[];
  groups: number;
  silu: boolean;
  eps?: number;
  /** Added to every input: far from zero-mean, as after a residual add. */
  offset?: number;
  /** Spread of the weights around 1: large values push the SiLU's input far into both tails. */
  wscale?: number;
  tol?: number;
}

const cases: Case[] = [
  { shape: [2, 12, 5, 7], groups: 4, silu: false },
  { shape: [2, 15, 9, 4], groups: 5, silu: true }, // C not a power of two, H ≠ W
  // no spatial dims: 256 rows per row_partial workgroup (not groups of 2, whose dx is ≈ 0: pure rounding)
  { shape: [3, 9], groups: 3, silu: true },
  { shape: [2, 6, 3, 4, 5], groups: 2, silu: false }, // rank 5
  { shape: [2, 6, 67, 65], groups: 3, silu: true, offset: 3 }, // S = 4355: two chunks per row, the second partial
  { shape: [2, 8, 6, 5], groups: 4, silu: true, wscale: 60 }, // |z| up to ~200: σ(z) underflows to 0 or rounds to 1
  // SD: 40960 elements per group (sums of 4096-element rows), eps 1e-6 as in the U-Net's resnets, |x| ≈ 8
  { shape: [1, 320, 64, 64], groups: 32, silu: true, eps: 1e-6, offset: 8 },
];

/** Inputs, the forward's stats (float64 math, stored as f32 like the GPU's) and the reference gradients. */
function setup({ shape, groups, silu, eps = 1e-5, offset = 0, wscale = 0.3 }: Case, seed = 40) {
  const [b, c] = shape, s = numel(shape.slice(2));
  const x = randn(numel(shape), seed).map((v) => offset + 0.5 * v);
  const w = randn(c, seed + 1).map((v) => 1 + wscale * v), bias = randn(c, seed + 2, 0.2);
  const dout = randn(x.length, seed + 3);
  const stats = new Float32Array(b * groups * 2);
  groupNormRef(new Float32Array(x.length), x, w, bias, b, c, s, groups, eps, silu, stats);
  const want = groupNormBackwardRef(x, dout, stats, w, bias, b, c, s, groups, silu);
  return { b, c, s, x, w, bias, dout, stats, want };
}

for (const k of cases) {
  const { shape, groups, silu, tol = 1e-5 } = k;
  gpuTest(`groupNormBackward ${JSON.stringify(shape)} groups=${groups}${silu ? " +silu" : ""}`, async (ctx) => {
    const { c, x, w, bias, dout, stats, want } = setup(k);
    const tx = ctx.upload(x, shape), tdout = ctx.upload(dout, shape), tstats = ctx.upload(stats, [shape[0], groups, 2]);
    const tw = ctx.upload(w, [c]), tb = ctx.upload(bias, [c]);
    const prior = { dx: randn(x.length, 7), dweight: randn(c, 8), dbias: randn(c, 9) };
    const acc = {
      dx: ctx.upload(prior.dx, shape),
      dweight: ctx.upload(prior.dweight, [c]),
      dbias: ctx.upload(prior.dbias, [c]),
    };
    const over = {
      dx: ctx.upload(prior.dx, shape),
      dweight: ctx.upload(prior.dweight, [c]),
      dbias: ctx.upload(prior.dbias, [c]),
    };
    const rec = ctx.recorder();
    const inputs = { x: tx, dout: tdout, stats: tstats, weight: tw };
    const got = groupNormBackward(rec, inputs, { groups, silu, bias: tb, ...acc });
    groupNormBackward(rec, inputs, { groups, silu, bias: tb, ...over, accumulate: false });
    await rec.submit();
    assert.deepEqual(got, acc);
    const errs: string[] = [];
    for (const g of ["dx", "dweight", "dbias"] as const) {
      const p = prior[g];
      errs.push(`${g} ${assertClose(await ctx.readF32(over[g]), want[g], tol, `${g} overwritten`).toExponential(1)}`);
      assertClose(await ctx.readF32(acc[g]), want[g].map((v, i) => v + p[i]), tol, `${g} accumulated`);
    }
    console.log(`  rel L2: ${errs.join(", ")}`);
    ctx.release(tx, tdout, tstats, tw, tb, ...Object.values(acc), ...Object.values(over));
  });
}

// Finite differences of the float64 forward, through the GPU forward's own stats (checks their layout end to end).
for (const [shape, groups, silu] of [[[2, 4, 3, 2], 2, false], [[2, 4, 3, 2], 2, true], [[3, 9], 3, true]] as const) {
  gpuTest(
    `groupNormBackward ${JSON.stringify(shape)}${silu ? " +silu" : ""} matches finite differences`,
    async (ctx) => {
      const [b, c] = shape, s = numel(shape.slice(2)), eps = 1e-5;
      const x = randn(numel(shape), 50), w = randn(c, 51).map((v) => 1 + 0.3 * v), bias = randn(c, 52, 0.5);
      const probe = randn(x.length, 53); // L = Σ out · probe, so dout = probe
      const tx = ctx.upload(x, [...shape]), tw = ctx.upload(w, [c]), tb = ctx.upload(bias, [c]);
      const tp = ctx.upload(probe, [...shape]), stats = ctx.tensor([b, groups, 2]);
      const dx = ctx.tensor([...shape]), dweight = ctx.tensor([c]), dbias = ctx.tensor([c]);
      const rec = ctx.recorder();
      groupNorm(rec, tx, { weight: tw, bias: tb, groups, eps, silu, stats });
      groupNormBackward(rec, { x: tx, dout: tp, stats, weight: tw }, {
        groups,
        silu,
        bias: tb,
        dx,
        dweight,
        dbias,
        accumulate: false,
      });
      await rec.submit();
      const fwd = (xv: ArrayLike<number>, wv: ArrayLike<number>, bv: ArrayLike<number>) => {
        const out = new Float64Array(xv.length);
        groupNormRef(out, xv, wv, bv, b, c, s, groups, eps, silu);
        return out;
      };
      const errs = [
        assertClose(await ctx.readF32(dx), fdGrad((v) => fwd(v, w, bias), x, probe), 1e-3, "dx vs finite differences"),
        assertClose(await ctx.readF32(dweight), fdGrad((v) => fwd(x, v, bias), w, probe), 1e-3, "dweight vs FD"),
        assertClose(await ctx.readF32(dbias), fdGrad((v) => fwd(x, w, v), bias, probe), 1e-3, "dbias vs FD"),
      ];
      console.log(`  rel err vs FD (dx, dweight, dbias): ${errs.map((e) => e.toExponential(1)).join(", ")}`);
      ctx.release(tx, tw, tb, tp, stats, dx, dweight, dbias);
    },
  );
}

gpuTest("groupNormBackward computes only the gradients it is given", async (ctx) => {
  const k: Case = { shape: [2, 6, 5, 3], groups: 3, silu: true };
  const { c, x, w, bias, dout, stats, want } = setup(k, 60);
  const tx = ctx.upload(x, k.shape), tdout = ctx.upload(dout, k.shape), tstats = ctx.upload(stats, [2, 3, 2]);
  const tw = ctx.upload(w, [c]), tb = ctx.upload(bias, [c]);
  const inputs = { x: tx, dout: tdout, stats: tstats, weight: tw };
  const opts = { groups: 3, silu: true, bias: tb, accumulate: false };
  const dweight = ctx.tensor([c]), dx = ctx.tensor(k.shape);
  const rec = ctx.recorder();
  assert.deepEqual(groupNormBackward(rec, inputs, opts), {});
  assert.equal(rec.dispatches, 0);
  assert.deepEqual(groupNormBackward(rec, inputs, { ...opts, dweight }), { dweight });
  assert.equal(rec.dispatches, 2); // row_partial, one parameter sum
  assert.deepEqual(groupNormBackward(rec, inputs, { ...opts, dx }), { dx });
  assert.equal(rec.dispatches, 5); // row_partial, group_means, dx_apply
  await rec.submit();
  assertClose(await ctx.readF32(dweight), want.dweight, 1e-5, "dweight alone");
  assertClose(await ctx.readF32(dx), want.dx, 1e-5, "dx alone");
  ctx.release(tx, tdout, tstats, tw, tb, dweight, dx);
});

gpuTest("groupNormBackward validates shapes, silu's bias and aliasing, naming the shapes", (ctx) => {
  const rec = ctx.recorder();
  const x = ctx.tensor([2, 12, 5, 7], "f32", "x"), dout = ctx.tensor([2, 12, 7, 5], "f32", "dout");
  const stats = ctx.tensor([2, 4, 2], "f32", "stats"),
    w = ctx.tensor([12], "f32", "w"),
    w2 = ctx.tensor([10], "f32", "w2");
  const ok = { x, dout: x, stats, weight: w };
  assert.throws(
    () => groupNormBackward(rec, { ...ok, dout }, { groups: 4 }),
    /groupNorm backward: dout "dout" \(x is \[2,12,5,7\]\): shape \[2,12,7,5\] does not match expected \[2,12,5,7\]/,
  );
  assert.throws(
    () => groupNormBackward(rec, ok, { groups: 3 }),
    /stats "stats" \(x is \[2,12,5,7\]\), groups = 3: shape \[2,4,2\] does not match expected \[2,3,2\]/,
  );
  assert.throws(() => groupNormBackward(rec, ok, { groups: 5 }), /groups = 5 does not divide the 12 channels/);
  assert.throws(
    () => groupNormBackward(rec, { ...ok, weight: w2 }, { groups: 4 }),
    /weight "w2" .*\[10\] does not match/,
  );
  assert.throws(() => groupNormBackward(rec, ok, { groups: 4, silu: true }), /silu needs the forward's bias/);
  assert.throws(
    () => groupNormBackward(rec, ok, { groups: 4, dweight: w2 }),
    /dweight "w2": shape \[10\] does not match expected \[12\]/,
  );
  assert.throws(() => groupNormBackward(rec, ok, { groups: 4, dx: x }), /dx "x" shares its buffer with input "x"/);
  ctx.release(x, dout, stats, w, w2);
});

gpuTest("groupNormBackward of an empty batch: dweight is a sum of nothing", async (ctx) => {
  const x = ctx.tensor([0, 4, 3]), stats = ctx.tensor([0, 2, 2]), w = ctx.tensor([4]);
  const acc = ctx.upload([1, 2, 3, 4], [4]), over = ctx.upload([1, 2, 3, 4], [4]);
  const rec = ctx.recorder();
  const inputs = { x, dout: ctx.tensor([0, 4, 3]), stats, weight: w };
  groupNormBackward(rec, inputs, { groups: 2, dweight: acc });
  groupNormBackward(rec, inputs, { groups: 2, dweight: over, accumulate: false });
  await rec.submit();
  assert.deepEqual([...await ctx.readF32(acc)], [1, 2, 3, 4]);
  assert.deepEqual([...await ctx.readF32(over)], [0, 0, 0, 0]);
  ctx.release(x, stats, w, acc, over, inputs.dout);
});
