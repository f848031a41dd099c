import { assertClose, gpuTest } from "./_gpu.ts";
import { groupNorm } from "../src/ops/group_norm.ts";
import { groupNormRef } from "../src/ref/group_norm.ts";
import { randn } from "../src/ref/random.ts";
import { numel } from "../src/gpu/tensor.ts";
import assert from "assert";

interface Case {
  shape: number[];
  groups: number;
  eps: number;
  silu: boolean;
  /** Added to every input: a large mean relative to the spread stresses the variance computation. */
  offset?: number;
  tol?: number;
}

const cases: Case[] = [
  { shape: [2, 12, 5, 7], groups: 4, eps: 1e-5, silu: false },
  { shape: [1, 64, 16, 16], groups: 32, eps: 1e-6, silu: true },
  { shape: [3, 6], groups: 3, eps: 1e-3, silu: false },
  { shape: [2, 6, 3, 4, 5], groups: 2, eps: 0.5, silu: true },
  // groups of 3·1073 elements: two chunks per group, the second partial
  { shape: [2, 12, 37, 29], groups: 4, eps: 1e-5, silu: false, offset: 3 },
  // the SD case: groups of 10 channels × 64·64 = 40960 elements, far from zero-mean
  { shape: [1, 320, 64, 64], groups: 32, eps: 1e-5, silu: false, offset: 8, tol: 1e-6 },
];

for (const { shape, groups, eps, silu, offset = 0, tol = 1e-5 } of cases) {
  gpuTest(`groupNorm ${JSON.stringify(shape)} groups=${groups} eps=${eps}${silu ? " +silu" : ""}`, async (ctx) => {
    const [b, c] = shape, s = numel(shape.slice(2));
    const x = randn(numel(shape), 11).map((v) => offset + 0.5 * v);
    const w = randn(c, 12).map((v) => 1 + 0.3 * v), bi = randn(c, 13, 0.2);
    const tx = ctx.upload(x, shape), tw = ctx.upload(w, [c]), tb = ctx.upload(bi, [c]);
    const tstats = ctx.tensor([b, groups, 2]);
    const rec = ctx.recorder();
    const out = groupNorm(rec, tx, { weight: tw, bias: tb, groups, eps, silu, stats: tstats });
    await rec.submit();
    const want = new Float32Array(x.length), wantStats = new Float32Array(b * groups * 2);
    groupNormRef(want, x, w, bi, b, c, s, groups, eps, silu, wantStats);
    assert.deepEqual(out.shape, shape);
    assertClose(await ctx.readF32(out), want, tol, "groupNorm out");
    assertClose(await ctx.readF32(tstats), wantStats, tol, "groupNorm stats (mean, rstd)");
    ctx.release(tx, tw, tb, tstats, out);
  });
}

gpuTest("groupNorm writes into a caller-owned out", async (ctx) => {
  const x = randn(2 * 4 * 9, 5);
  const tx = ctx.upload(x, [2, 4, 9]), tw = ctx.upload([1, 2, 3, 4], [4]), tb = ctx.upload([0, 0, 1, 1], [4]);
  const out = ctx.tensor([2, 4, 9]);
  const rec = ctx.recorder();
  assert.equal(groupNorm(rec, tx, { weight: tw, bias: tb, groups: 2, out }), out);
  await rec.submit();
  const want = new Float32Array(x.length);
  groupNormRef(want, x, new Float32Array([1, 2, 3, 4]), new Float32Array([0, 0, 1, 1]), 2, 4, 9, 2, 1e-5);
  assertClose(await ctx.readF32(out), want, 1e-5, "groupNorm out=");
  ctx.release(tx, tw, tb, out);
});

gpuTest("groupNorm validates groups, affine shapes and aliasing, naming the shapes", (ctx) => {
  const rec = ctx.recorder();
  const x = ctx.tensor([2, 12, 5, 7]), w = ctx.tensor([12]), w2 = ctx.tensor([10]);
  assert.throws(() => groupNorm(rec, x, { weight: w, bias: w, groups: 5 }), /groups = 5 .* 12 channels .*\[2,12,5,7\]/);
  assert.throws(
    () => groupNorm(rec, x, { weight: w2, bias: w, groups: 4 }),
    /weight \(x is \[2,12,5,7\]\): shape \[10\] does not match expected \[12\]/,
  );
  assert.throws(() => groupNorm(rec, x, { weight: w, bias: w, groups: 4, out: x }), /must not share a buffer/);
  assert.throws(() => groupNorm(rec, w, { weight: w, bias: w, groups: 4 }), /needs at least \[B, C\]/);
  ctx.release(x, w, w2);
});
