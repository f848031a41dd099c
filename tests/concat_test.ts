import { assertClose, gpuTest } from "./_gpu.ts";
import { concat } from "../src/ops/concat.ts";
import { concatRef } from "../src/ref/concat.ts";
import { randn } from "../src/ref/random.ts";
import { numel } from "../src/gpu/tensor.ts";
import assert from "assert";

const cases: [number[][], number][] = [
  [[[2, 5, 3, 7], [2, 3, 3, 7]], 1], // skip connection, odd channel counts
  [[[2, 1, 9, 4], [2, 6, 9, 4], [2, 4, 9, 4]], 1],
  [[[3, 5], [3, 2], [3, 1]], -1], // last axis: inner = 1
  [[[4, 3], [1, 3]], 0], // first axis: outer = 1
  [[[2, 0, 5], [2, 3, 5]], 1], // an empty input
  [[[5, 7, 3]], 1],
  [[[70, 3], [70, 5]], 1], // 140 runs: the kernel rather than buffer copies
  [[[9, 4, 2, 3], [9, 1, 2, 3], [9, 2, 2, 3]], 1],
  [[[30, 4, 2, 3], [30, 1, 2, 3], [30, 2, 2, 3]], 1], // 90 runs: the kernel
];
for (const [shapes, axis] of cases) {
  gpuTest(`concat ${shapes.map((s) => JSON.stringify(s)).join(" ⊕ ")} on axis ${axis}`, async (ctx) => {
    const xs = shapes.map((s, k) => randn(numel(s), 20 + k));
    // (an empty upload would write 0 bytes, which Deno's queue.writeBuffer does not survive)
    const ts = xs.map((x, k) => (x.length ? ctx.upload(x, shapes[k]) : ctx.tensor(shapes[k])));
    const rec = ctx.recorder();
    const out = concat(rec, ts, { axis });
    await rec.submit();
    const [want, shape] = concatRef(xs, shapes, axis < 0 ? axis + shapes[0].length : axis);
    assert.deepEqual(out.shape, shape);
    assertClose(await ctx.readF32(out), want, 1e-7, "concat");
    ctx.release(...ts, out);
  });
}

gpuTest("concat errors name the shapes", (ctx) => {
  const rec = ctx.recorder();
  const a = ctx.tensor([2, 3, 4]),
    b = ctx.tensor([2, 3, 5]),
    c = ctx.tensor([2, 3]),
    ids = ctx.tensor([2, 3, 4], "i32");
  assert.throws(() => concat(rec, [a, b]), /concat: shapes \[2,3,4\], \[2,3,5\] differ outside axis 1/);
  assert.throws(() => concat(rec, [a, c], { axis: 2 }), /concat: shapes \[2,3,4\], \[2,3\] differ outside axis 2/);
  assert.throws(
    () => concat(rec, [a, b], { axis: 3 }),
    /concat: axis 3 is out of range for rank 3 \(shapes \[2,3,4\], \[2,3,5\]\)/,
  );
  assert.throws(() => concat(rec, [a, ids], { axis: 0 }), /concat: dtypes differ \(f32, i32\)/);
  assert.throws(() => concat(rec, []), /concat: needs at least one tensor/);
  assert.throws(
    () => concat(rec, [a, b], { axis: 2, out: a }),
    /concat output "tensor": shape \[2,3,4\] does not match expected \[2,3,9\]/,
  );
  ctx.release(a, b, c, ids);
});
