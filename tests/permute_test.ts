import { assertClose, gpuTest } from "./_gpu.ts";
import { permute, simplifyPermutation, transpose } from "../src/ops/permute.ts";
import { permuteRef } from "../src/ref/permute.ts";
import { randn } from "../src/ref/random.ts";
import { numel } from "../src/gpu/tensor.ts";
import assert from "assert";

const cases: [number[], number[]][] = [
  [[2, 5, 3, 7], [0, 2, 3, 1]], // NCHW → [B, HW, C]: the tiled transpose
  [[2, 33, 47], [0, 2, 1]], // tiles not multiples of 32
  [[2, 9, 3, 5], [0, 2, 1, 3]], // head split [B, T, h, d] → [B, h, T, d]
  [[2, 3, 9, 5], [0, 2, 1, 3]], // and back
  [[2, 7, 3, 40], [0, 2, 1, 3]], // d = 40: 8 words per invocation
  [[3, 5, 2, 12], [0, 2, 1, 3]], // 4 words
  [[3, 5, 2, 6], [2, 0, 1, 3]], // 2 words
  [[2, 3, 4, 5, 6, 7], [5, 3, 1, 0, 2, 4]], // rank 6, nothing merges
  [[3, 1, 4, 1, 5], [4, 1, 0, 3, 2]], // size-1 dims dropped
  [[4, 6, 5], [0, 1, 2]], // identity: a copy
  [[1, 70, 1], [2, 1, 0]], // only size-1 dims move: a copy
  [[2, 3, 4, 5, 6, 7, 2], [6, 0, 1, 2, 3, 5, 4]], // rank 7, merges to rank 3
];
for (const [shape, perm] of cases) {
  gpuTest(`permute ${JSON.stringify(shape)} by ${JSON.stringify(perm)} (tiled and naive)`, async (ctx) => {
    const x = randn(numel(shape), 7);
    const tx = ctx.upload(x, shape);
    const rec = ctx.recorder();
    const fast = permute(rec, tx, perm);
    const naive = permute(rec, tx, perm, { naive: true });
    await rec.submit();
    const [want, outShape] = permuteRef(x, shape, perm);
    assert.deepEqual(fast.shape, outShape);
    assertClose(await ctx.readF32(fast), want, 1e-7, "permute");
    assertClose(await ctx.readF32(naive), want, 1e-7, "permute (naive)");
    ctx.release(tx, fast, naive);
  });
}

gpuTest("transpose swaps two dims, negative indices from the end", async (ctx) => {
  const shape = [3, 4, 5];
  const x = randn(60, 8);
  const tx = ctx.upload(x, shape);
  const rec = ctx.recorder();
  const a = transpose(rec, tx, 0, -1), b = transpose(rec, tx, 1, 2);
  await rec.submit();
  assertClose(await ctx.readF32(a), permuteRef(x, shape, [2, 1, 0])[0], 1e-7, "transpose 0,-1");
  assertClose(await ctx.readF32(b), permuteRef(x, shape, [0, 2, 1])[0], 1e-7, "transpose 1,2");
  ctx.release(tx, a, b);
});

Deno.test("simplifyPermutation drops size-1 dims and merges runs", () => {
  assert.deepEqual(simplifyPermutation([2, 320, 64, 64], [0, 2, 3, 1]), { shape: [2, 320, 4096], perm: [0, 2, 1] });
  assert.deepEqual(simplifyPermutation([2, 77, 8, 40], [0, 2, 1, 3]), { shape: [2, 77, 8, 40], perm: [0, 2, 1, 3] });
  assert.deepEqual(simplifyPermutation([3, 1, 4], [1, 2, 0]), { shape: [3, 4], perm: [1, 0] });
  assert.deepEqual(simplifyPermutation([1, 1], [1, 0]), { shape: [], perm: [] });
});

gpuTest("permute errors name the shapes", (ctx) => {
  const rec = ctx.recorder();
  const x = ctx.tensor([2, 3, 4]), half = ctx.tensor([2, 3, 4], "f16", "half");
  assert.throws(() => permute(rec, x, [0, 1]), /permute: \[0,1\] is not a permutation of the 3 dims of \[2,3,4\]/);
  assert.throws(() => permute(rec, x, [0, 1, 1]), /not a permutation/);
  assert.throws(() => transpose(rec, x, 0, 3), /transpose: dim 3 is out of range for \[2,3,4\]/);
  assert.throws(() => permute(rec, half, [2, 1, 0]), /permute: "half" \[2,3,4\] is f16, expected f32 or i32 or u32/);
  const big = ctx.tensor([2, 2, 2, 2, 2, 2, 2], "f32", "big");
  assert.throws(() => permute(rec, big, [6, 5, 4, 3, 2, 1, 0]), /still has 7 dims after merging \(at most 6\)/);
  ctx.release(x, half, big);
});
