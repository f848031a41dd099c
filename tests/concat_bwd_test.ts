import { assertClose, gpuTest } from "./_gpu.ts";
import { fdGrad } from "./_fd.ts";
import { concatBackward } from "../src/ops/concat.ts";
import { concatBackwardRef, concatRef } from "../src/ref/concat.ts";
import { randn } from "../src/ref/random.ts";
import { numel } from "../src/gpu/tensor.ts";
import assert from "assert";

const cases: [number[][], number][] = [
  [[[2, 5, 3, 7], [2, 3, 3, 7]], 1], // skip connection, odd channel counts
  [[[2, 1, 9, 4], [2, 6, 9, 4], [2, 4, 9, 4]], 1], // 4 words per invocation
  [[[3, 5], [3, 2], [3, 1]], -1], // last axis: inner = 1
  [[[4, 3], [1, 3]], 0], // first axis: outer = 1
  [[[2, 0, 5], [2, 3, 5]], 1], // an empty input
  [[[70, 3], [70, 5]], 1], // 140 runs: the kernel rather than buffer copies even without accumulating
];
for (const [shapes, axis0] of cases) {
  const name = shapes.map((s) => JSON.stringify(s)).join(" ⊕ ");
  gpuTest(`concatBackward ${name} on axis ${axis0} (accumulate and overwrite)`, async (ctx) => {
    const axis = axis0 < 0 ? axis0 + shapes[0].length : axis0;
    const sizes = shapes.map((s) => s[axis]);
    const shape = shapes[0].map((d, i) => (i === axis ? sizes.reduce((a, b) => a + b) : d));
    const dy = randn(numel(shape), 1);
    const priors = shapes.map((s, k) => randn(numel(s), 10 + k));
    // (an empty upload would write 0 bytes, which Deno's queue.writeBuffer does not survive)
    const up = (x: Float32Array, s: number[]) => (x.length ? ctx.upload(x, s) : ctx.tensor(s));
    const tdy = ctx.upload(dy, shape);
    const acc = priors.map((p, k) => up(p, shapes[k])), over = priors.map((p, k) => up(p, shapes[k]));
    const rec = ctx.recorder();
    const got = concatBackward(rec, tdy, { dxs: acc, axis: axis0 });
    concatBackward(rec, tdy, { dxs: over, axis: axis0, accumulate: false });
    await rec.submit();
    assert.deepEqual(got, acc);
    const want = concatBackwardRef(dy, shape, sizes, axis);
    for (const [k, w] of want.entries()) {
      assertClose(await ctx.readF32(acc[k]), w.map((v, i) => v + priors[k][i]), 1e-7, `dxs[${k}] accumulated`);
      assertClose(await ctx.readF32(over[k]), w, 1e-7, `dxs[${k}] overwritten`);
    }
    ctx.release(tdy, ...acc, ...over);
  });
}

gpuTest("concatBackward skips null gradients (sizes given) and matches finite differences", async (ctx) => {
  const shapes = [[2, 3, 2], [2, 1, 2], [2, 2, 2]];
  const xs = shapes.map((s, k) => randn(numel(s), 20 + k));
  const w = randn(2 * 6 * 2, 30);
  const tw = ctx.upload(w, [2, 6, 2]);
  const d0 = ctx.tensor(shapes[0]), d2 = ctx.upload(new Float32Array(8).fill(7), shapes[2]);
  const rec = ctx.recorder();
  const got = concatBackward(rec, tw, { dxs: [d0, null, d2], sizes: [3, 1, 2], accumulate: false });
  await rec.submit();
  assert.deepEqual(got, [d0, null, d2]);
  for (const k of [0, 2]) {
    const fd = fdGrad((v) => concatRef(xs.map((x, j) => (j === k ? v : x)), shapes, 1)[0], xs[k], w);
    assertClose(await ctx.readF32(got[k]!), fd, 1e-3, `dxs[${k}] vs finite differences`);
  }
  ctx.release(tw, d0, d2);
});

gpuTest("concatBackward errors name the shapes", (ctx) => {
  const rec = ctx.recorder();
  const dy = ctx.tensor([2, 5, 4], "f32", "dy"), a = ctx.tensor([2, 3, 4], "f32", "a");
  const b = ctx.tensor([2, 3, 4], "f32", "b"), c = ctx.tensor([2, 2, 3], "f32", "c");
  assert.throws(
    () => concatBackward(rec, dy, { dxs: [a, b] }),
    /concat backward: input lengths \[3,3\] along axis 1 sum to 6, dy \[2,5,4\] has 5/,
  );
  assert.throws(() => concatBackward(rec, dy, { dxs: [a, null] }), /input 1 has no gradient, so sizes\[1\] is needed/);
  assert.throws(
    () => concatBackward(rec, dy, { dxs: [a, c] }),
    /concat backward dxs\[1\] "c": shape \[2,2,3\] does not match expected \[2,2,4\]/,
  );
  assert.throws(() => concatBackward(rec, dy, { dxs: [a, null], sizes: [2, 2] }), /sizes\[0\] = 2 but dxs\[0\] is/);
  assert.throws(() => concatBackward(rec, dy, { dxs: [a], axis: 3 }), /axis 3 is out of range for dy \[2,5,4\]/);
  ctx.release(dy, a, b, c);
});
