import { assertClose, gpuTest } from "./_gpu.ts";
import { lincomb, type LincombTerm } from "../src/ops/lincomb.ts";
import { lincombRef } from "../src/ref/lincomb.ts";
import { randn } from "../src/ref/random.ts";
import { numel } from "../src/gpu/tensor.ts";
import assert from "assert";

// [shape, number of terms]: one dispatch for ≤ 4 terms, chained dispatches past that.
const cases: [number[], number][] = [
  [[7], 1],
  [[3, 5, 7], 2],
  [[2, 4, 9, 11], 3],
  [[70001], 4],
  [[1, 4, 13, 17], 5],
  [[33], 9],
];

for (const [shape, nTerms] of cases) {
  gpuTest(`lincomb ${nTerms} term(s) ${JSON.stringify(shape)}`, async (ctx) => {
    const n = numel(shape);
    const host = Array.from({ length: nTerms }, (_, k) => randn(n, 10 + k));
    const coefs = host.map((_, k) => (k % 2 ? -1 : 1) * (0.37 + 1.9 * k));
    const xs = host.map((h, k) => ctx.upload(h, shape, "f32", `x${k}`));
    const rec = ctx.recorder();
    const out = lincomb(rec, xs.map((x, k): LincombTerm => [coefs[k], x]));
    await rec.submit();
    assert.deepEqual(out.shape, shape);
    const want = lincombRef(host.map((h, k) => [coefs[k], h] as const));
    assertClose(await ctx.readF32(out), want, 1e-6, `lincomb ${nTerms} terms`);
    ctx.release(out, ...xs);
  });
}

gpuTest("lincomb writes a caller-given output, and accepts one tensor in several terms", async (ctx) => {
  const a = randn(100, 1), b = randn(100, 2);
  const ta = ctx.upload(a, [10, 10]), tb = ctx.upload(b, [10, 10]), out = ctx.tensor([10, 10]);
  const rec = ctx.recorder();
  assert.equal(lincomb(rec, [[2, ta], [-0.5, tb], [1, ta]], { out }), out);
  await rec.submit();
  assertClose(await ctx.readF32(out), lincombRef([[3, a], [-0.5, b]]), 1e-6, "lincomb out");
  ctx.release(ta, tb, out);
});

gpuTest("lincomb rejects bad terms, naming them", (ctx) => {
  const rec = ctx.recorder();
  const a = ctx.tensor([2, 3], "f32", "a"), b = ctx.tensor([3, 2], "f32", "b"), i = ctx.tensor([2, 3], "i32", "ids");
  assert.throws(() => lincomb(rec, []), /lincomb: no terms/);
  assert.throws(() => lincomb(rec, [[1, a], [1, b]]), /term 1 "b".*\[3,2\] does not match expected \[2,3\]/);
  assert.throws(() => lincomb(rec, [[1, a], [NaN, a]]), /coefficient 1 .* is NaN/);
  assert.throws(() => lincomb(rec, [[1, i]]), /"ids" \[2,3\] is i32, expected f32/);
  assert.throws(() => lincomb(rec, [[1, a]], { out: a }), /shares its buffer with input "a"/);
  assert.equal(rec.dispatches, 0);
  ctx.release(a, b, i);
});
