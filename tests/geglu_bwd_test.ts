import { assertClose, gpuTest } from "./_gpu.ts";
import { fdGrad } from "./_fd.ts";
import { gegluBackward } from "../src/ops/geglu.ts";
import { gegluBackwardRef, gegluRef } from "../src/ref/geglu.ts";
import { randn } from "../src/ref/random.ts";
import { numel } from "../src/gpu/tensor.ts";
import assert from "assert";

// [..., 2F] inputs: odd F, a single row, rank 1, rank 4, F % 4 == 0 (the vec4 path)
for (const shape of [[2, 7, 2 * 13], [1, 2], [2 * 641], [2, 3, 5, 2 * 37], [3, 5, 2 * 12], [2, 2 * 6]]) {
  gpuTest(`gegluBackward ${JSON.stringify(shape)} (accumulate and overwrite)`, async (ctx) => {
    const f = shape.at(-1)! / 2, rows = numel(shape) / (2 * f);
    const dyShape = [...shape.slice(0, -1), f];
    const x = randn(numel(shape), 5, 2), dy = randn(rows * f, 6), prior = randn(numel(shape), 7);
    const tx = ctx.upload(x, shape), tdy = ctx.upload(dy, dyShape);
    const acc = ctx.upload(prior, shape), over = ctx.upload(prior, shape);
    const rec = ctx.recorder();
    const got = gegluBackward(rec, { dy: tdy, x: tx }, { dx: acc });
    gegluBackward(rec, { dy: tdy, x: tx }, { dx: over, accumulate: false });
    await rec.submit();
    assert.equal(got.dx, acc);
    const want = gegluBackwardRef(x, dy, rows, f);
    assertClose(await ctx.readF32(acc), want.map((v, i) => v + prior[i]), 1e-6, "dx accumulated");
    assertClose(await ctx.readF32(over), want, 1e-6, "dx overwritten");
    ctx.release(tx, tdy, acc, over);
  });
}

for (const shape of [[3, 2 * 5], [2, 2 * 4]]) {
  gpuTest(`gegluBackward ${JSON.stringify(shape)} matches finite differences of the f64 forward`, async (ctx) => {
    const f = shape.at(-1)! / 2, rows = numel(shape) / (2 * f);
    const x = randn(numel(shape), 8, 1.5), w = randn(rows * f, 9);
    const tx = ctx.upload(x, shape), tw = ctx.upload(w, [rows, f]), dx = ctx.tensor(shape);
    const rec = ctx.recorder();
    gegluBackward(rec, { dy: tw, x: tx }, { dx, accumulate: false });
    await rec.submit();
    assertClose(await ctx.readF32(dx), fdGrad((v) => gegluRef(v, rows, f), x, w), 1e-3, "dx vs finite differences");
    ctx.release(tx, tw, dx);
  });
}

gpuTest("gegluBackward errors name the shapes", (ctx) => {
  const rec = ctx.recorder();
  const x = ctx.tensor([2, 6], "f32", "x"),
    dy = ctx.tensor([2, 3], "f32", "dy"),
    bad = ctx.tensor([2, 4], "f32", "bad");
  assert.throws(
    () => gegluBackward(rec, { dy, x: bad }),
    /geglu backward: dy "dy" for x \[2,4\]: shape \[2,3\] does not/,
  );
  assert.throws(() => gegluBackward(rec, { dy, x: ctx.tensor([2, 5]) }), /input \[2,5\] needs an even last dimension/);
  assert.throws(
    () => gegluBackward(rec, { dy, x }, { dx: bad }),
    /geglu backward dx "bad": shape \[2,4\] does not match expected \[2,6\]/,
  );
  assert.deepEqual(gegluBackward(rec, { dy, x }), {});
  ctx.release(x, dy, bad);
});
