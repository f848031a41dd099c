import { assertClose, gpuTest } from "./_gpu.ts";
import { upsampleNearest } from "../src/ops/upsample.ts";
import { upsampleNearestRef } from "../src/ref/upsample.ts";
import { randn } from "../src/ref/random.ts";
import { numel } from "../src/gpu/tensor.ts";
import assert from "assert";

// s·W % 4 == 0 takes the aligned path; [1,3,3]×3 and [5,1,3]×1 end in a partial vec4
const cases: [number[], number][] = [
  [[2, 3, 5, 7], 2],
  [[1, 13, 1, 9], 2],
  [[2, 3, 5, 6], 2],
  [[3, 4, 6], 2],
  [[2, 5, 3, 2], 3],
  [[1, 3, 3], 3],
  [[5, 1, 3], 1],
  [[4, 4], 1],
];
for (const [shape, s] of cases) {
  gpuTest(`upsampleNearest ${JSON.stringify(shape)} ×${s}`, async (ctx) => {
    const x = randn(numel(shape), 3);
    const tx = ctx.upload(x, shape);
    const rec = ctx.recorder();
    const out = upsampleNearest(rec, tx, { scale: s });
    await rec.submit();
    const [h, w] = shape.slice(-2);
    assert.deepEqual(out.shape, [...shape.slice(0, -2), h * s, w * s]);
    assertClose(await ctx.readF32(out), upsampleNearestRef(x, numel(shape) / (h * w), h, w, s), 1e-7, "upsample");
    ctx.release(tx, out);
  });
}

gpuTest("upsampleNearest copies i32 bit-exactly", async (ctx) => {
  const x = Int32Array.from([1, -2, 2 ** 31 - 1, -(2 ** 31), 7, 0]);
  const tx = ctx.upload(x, [1, 2, 3], "i32");
  const rec = ctx.recorder();
  const out = upsampleNearest(rec, tx);
  await rec.submit();
  assert.deepEqual([...await ctx.read(out)], [...upsampleNearestRef(x, 1, 2, 3)]);
  ctx.release(tx, out);
});

gpuTest("upsampleNearest errors name the shapes", (ctx) => {
  const rec = ctx.recorder();
  const x = ctx.tensor([2, 3, 4, 5]), v = ctx.tensor([5]), out = ctx.tensor([2, 3, 8, 9], "f32", "out");
  assert.throws(() => upsampleNearest(rec, v), /upsampleNearest: input \[5\] needs at least 2 dimensions/);
  assert.throws(() => upsampleNearest(rec, x, { scale: 1.5 }), /scale must be a positive integer, got 1.5/);
  assert.throws(
    () => upsampleNearest(rec, x, { out }),
    /upsampleNearest output "out": shape \[2,3,8,9\] does not match expected \[2,3,8,10\]/,
  );
  assert.throws(() => upsampleNearest(rec, x, { scale: 1, out: x }), /shares its buffer with input/);
  ctx.release(x, v, out);
});
