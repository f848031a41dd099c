import { assertClose, gpuTest } from "./_gpu.ts";
import { fdGrad } from "./_fd.ts";
import { upsampleNearestBackward } from "../src/ops/upsample.ts";
import { upsampleNearestBackwardRef, upsampleNearestRef } from "../src/ref/upsample.ts";
import { randn } from "../src/ref/random.ts";
import { numel } from "../src/gpu/tensor.ts";
import assert from "assert";

// W % 4 == 0 takes the aligned path; odd sizes end in a partial vec4
const cases: [number[], number][] = [
  [[2, 3, 5, 8], 2],
  [[2, 3, 5, 7], 2],
  [[1, 13, 1, 9], 2],
  [[3, 4, 6], 2],
  [[2, 5, 3, 2], 3],
  [[1, 3, 3], 3],
  [[5, 1, 3], 1],
  [[2, 3, 4, 4], 5],
  [[1, 1, 2, 4], 64], // the largest scale: 4·64² loop iterations per invocation
];
for (const [shape, s] of cases) {
  gpuTest(`upsampleNearestBackward ${JSON.stringify(shape)} ×${s} (accumulate and overwrite)`, async (ctx) => {
    const [h, w] = shape.slice(-2);
    const dyShape = [...shape.slice(0, -2), h * s, w * s];
    const dy = randn(numel(dyShape), 3), prior = randn(numel(shape), 4);
    const tdy = ctx.upload(dy, dyShape), acc = ctx.upload(prior, shape), over = ctx.upload(prior, shape);
    const rec = ctx.recorder();
    const got = upsampleNearestBackward(rec, tdy, { dx: acc, scale: s });
    upsampleNearestBackward(rec, tdy, { dx: over, scale: s, accumulate: false });
    await rec.submit();
    assert.equal(got.dx, acc);
    const want = upsampleNearestBackwardRef(dy, numel(shape) / (h * w), h, w, s);
    assertClose(await ctx.readF32(acc), want.map((v, i) => v + prior[i]), 1e-5, "dx accumulated");
    assertClose(await ctx.readF32(over), want, 1e-5, "dx overwritten");
    ctx.release(tdy, acc, over);
  });
}

gpuTest("upsampleNearestBackward matches finite differences of the f64 forward", async (ctx) => {
  for (const [shape, s] of [[[2, 3, 5], 2], [[1, 2, 4], 3]] as [number[], number][]) {
    const [h, w] = shape.slice(-2), planes = numel(shape) / (h * w);
    const x = randn(numel(shape), 5), w0 = randn(numel(shape) * s * s, 6);
    const tw = ctx.upload(w0, [...shape.slice(0, -2), h * s, w * s]), dx = ctx.tensor(shape);
    const rec = ctx.recorder();
    upsampleNearestBackward(rec, tw, { dx, scale: s, accumulate: false });
    await rec.submit();
    const fd = fdGrad((v) => upsampleNearestRef(v, planes, h, w, s), x, w0);
    assertClose(await ctx.readF32(dx), fd, 1e-3, `dx ×${s} vs finite differences`);
    ctx.release(tw, dx);
  }
});

gpuTest("upsampleNearestBackward errors name the shapes", (ctx) => {
  const rec = ctx.recorder();
  const dy = ctx.tensor([2, 3, 8, 10], "f32", "dy"), dx = ctx.tensor([2, 3, 4, 4], "f32", "dx");
  assert.throws(
    () => upsampleNearestBackward(rec, dy, { dx }),
    /upsampleNearest backward: dy "dy" for dx \[2,3,4,4\] ×2: shape \[2,3,8,10\] does not match expected \[2,3,8,8\]/,
  );
  assert.throws(() => upsampleNearestBackward(rec, dy, { dx, scale: 65 }), /scale must be an integer in \[1, 64\]/);
  assert.throws(() => upsampleNearestBackward(rec, dy, { dx: dy, scale: 1 }), /dx "dy" shares its buffer/);
  assert.deepEqual(upsampleNearestBackward(rec, dy), {});
  ctx.release(dy, dx);
});
