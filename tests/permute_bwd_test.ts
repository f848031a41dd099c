import { assertClose, gpuTest } from "./_gpu.ts";
import { fdGrad } from "./_fd.ts";
import { inversePermutation, permuteBackward } from "../src/ops/permute.ts";
import { permuteBackwardRef, permuteRef } from "../src/ref/permute.ts";
import { randn } from "../src/ref/random.ts";
import { numel } from "../src/gpu/tensor.ts";
import assert from "assert";

// forward input shapes and permutations; the backward runs the inverse permutation on dy
const cases: [number[], number[]][] = [
  [[2, 5, 3, 7], [0, 2, 3, 1]], // NCHW → [B, HW, C]; backward is the tiled transpose too
  [[2, 33, 47], [0, 2, 1]], // tiles not multiples of 32
  [[2, 9, 3, 5], [0, 2, 1, 3]], // head split; 5 words per row: VEC 1
  [[2, 7, 3, 40], [0, 2, 1, 3]], // d = 40: 8 words per invocation
  [[2, 3, 4, 5, 6, 7], [5, 3, 1, 0, 2, 4]], // rank 6, nothing merges
  [[3, 1, 4, 1, 5], [4, 1, 0, 3, 2]], // size-1 dims dropped
  [[4, 6, 5], [0, 1, 2]], // identity: a copy, or an add when accumulating
  [[1, 70, 1], [2, 1, 0]], // only size-1 dims move
];
for (const [shape, perm] of cases) {
  gpuTest(
    `permuteBackward ${JSON.stringify(shape)} by ${JSON.stringify(perm)} (accumulate and overwrite)`,
    async (ctx) => {
      const dyShape = perm.map((a) => shape[a]);
      const dy = randn(numel(shape), 7), prior = randn(numel(shape), 8);
      const tdy = ctx.upload(dy, dyShape), acc = ctx.upload(prior, shape), over = ctx.upload(prior, shape);
      const rec = ctx.recorder();
      const got = permuteBackward(rec, tdy, perm, { dx: acc });
      permuteBackward(rec, tdy, perm, { dx: over, accumulate: false });
      await rec.submit();
      assert.equal(got.dx, acc);
      const want = permuteBackwardRef(dy, shape, perm);
      assertClose(await ctx.readF32(acc), want.map((v, i) => v + prior[i]), 1e-7, "dx accumulated");
      assertClose(await ctx.readF32(over), want, 1e-7, "dx overwritten");
      ctx.release(tdy, acc, over);
    },
  );
}

gpuTest("permuteBackward matches finite differences of the f64 forward", async (ctx) => {
  const [shape, perm] = [[2, 3, 4], [2, 0, 1]];
  const x = randn(24, 9), w = randn(24, 10);
  const tw = ctx.upload(w, perm.map((a) => shape[a])), dx = ctx.tensor(shape);
  const rec = ctx.recorder();
  permuteBackward(rec, tw, perm, { dx, accumulate: false });
  await rec.submit();
  assertClose(await ctx.readF32(dx), fdGrad((v) => permuteRef(v, shape, perm)[0], x, w), 1e-3, "dx vs FD");
  assert.deepEqual(inversePermutation(perm), [1, 2, 0]);
  ctx.release(tw, dx);
});

gpuTest("permuteBackward errors name the shapes", (ctx) => {
  const rec = ctx.recorder();
  const dy = ctx.tensor([4, 2, 3], "f32", "dy"), dx = ctx.tensor([2, 4, 3], "f32", "dx");
  assert.throws(
    () => permuteBackward(rec, dy, [2, 0, 1], { dx }),
    /permute backward dx "dx": shape \[2,4,3\] does not match expected \[2,3,4\]/,
  );
  assert.throws(() => permuteBackward(rec, dy, [0, 0, 1], { dx }), /\[0,0,1\] is not a permutation of the 3 dims/);
  assert.throws(() => permuteBackward(rec, dy, [0, 1, 2], { dx: dy }), /dx "dy" shares its buffer with input "dy"/);
  assert.deepEqual(permuteBackward(rec, dy, [1, 0, 2]), {});
  ctx.release(dy, dx);
});
