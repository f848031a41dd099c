import { assertClose, gpuTest } from "./_gpu.ts";
import { mean, type ReduceOptions, sum } from "../src/ops/reduce.ts";
import { reduceRef } from "../src/ref/reduce.ts";
import { randn, randu } from "../src/ref/random.ts";
import { numel } from "../src/gpu/tensor.ts";
import assert from "assert";

interface Case {
  op: "sum" | "mean";
  shape: number[];
  axis: number | null;
  keepDims?: boolean;
  want: number[];
}

const cases: Case[] = [
  { op: "sum", shape: [3, 5, 7], axis: -1, want: [3, 5] },
  { op: "sum", shape: [3, 5, 7], axis: 0, want: [5, 7] },
  { op: "mean", shape: [3, 5, 7], axis: 1, keepDims: true, want: [3, 1, 7] },
  { op: "mean", shape: [2, 320, 9, 7], axis: 1, keepDims: true, want: [2, 1, 9, 7] }, // over channels
  { op: "sum", shape: [2, 320, 9, 7], axis: 3, want: [2, 320, 9] },
  { op: "mean", shape: [2, 77, 768], axis: -1, want: [2, 77] },
  { op: "sum", shape: [4097, 3], axis: 0, want: [3] }, // two passes with inner = 3
  { op: "sum", shape: [1, 70001], axis: 1, want: [1] }, // two passes, a row
  { op: "mean", shape: [33, 5000, 2], axis: 1, want: [33, 2] },
  { op: "sum", shape: [5], axis: null, keepDims: true, want: [1] },
  { op: "mean", shape: [6, 1, 4], axis: 1, want: [6, 4] }, // n = 1
];

function view(shape: number[], axis: number | null): [number, number, number] {
  if (axis === null) return [1, numel(shape), 1];
  const a = axis < 0 ? axis + shape.length : axis;
  return [numel(shape.slice(0, a)), shape[a], numel(shape.slice(a + 1))];
}

for (const { op, shape, axis, keepDims, want: wantShape } of cases) {
  gpuTest(`${op} ${JSON.stringify(shape)} axis=${axis}${keepDims ? " keepDims" : ""}`, async (ctx) => {
    const x = randn(numel(shape), 41).map((v) => v + 0.25);
    const tx = ctx.upload(x, shape);
    const rec = ctx.recorder();
    const opts: ReduceOptions = { axis, keepDims };
    const out = op === "sum" ? sum(rec, tx, opts) : mean(rec, tx, opts);
    await rec.submit();
    assert.deepEqual(out.shape, wantShape);
    const [outer, n, inner] = view(shape, axis);
    const want = new Float32Array(outer * inner);
    reduceRef(want, x, outer, n, inner, op);
    assertClose(await ctx.readF32(out), want, 1e-5, op);
    ctx.release(tx, out);
  });
}

gpuTest("sum and mean of 5M elements to a scalar (multi-pass)", async (ctx) => {
  const n = 5_000_000;
  const x = randu(n, 42, -0.5, 1.5);
  const tx = ctx.upload(x, [n]);
  const rec = ctx.recorder();
  const s = sum(rec, tx), m = mean(rec, tx, { axis: 0 });
  await rec.submit();
  assert.deepEqual(s.shape, []);
  assert.deepEqual(m.shape, []);
  let want = 0;
  for (let i = 0; i < n; i++) want += x[i];
  assertClose(await ctx.readF32(s), [want], 1e-6, "sum 5M");
  assertClose(await ctx.readF32(m), [want / n], 1e-6, "mean 5M");
  ctx.release(tx, s, m);
});

gpuTest("sum over an empty axis is zero; mean over one throws", async (ctx) => {
  const tx = ctx.tensor([3, 0, 2]);
  const rec = ctx.recorder();
  const s = sum(rec, tx, { axis: 1 });
  await rec.submit();
  assert.deepEqual(Array.from(await ctx.readF32(s)), [0, 0, 0, 0, 0, 0]);
  assert.throws(() => mean(ctx.recorder(), tx, { axis: 1 }), /reduced axis of x \[3,0,2\] is empty/);
  ctx.release(tx, s);
});

gpuTest("sum validates axis and out, naming the shapes", (ctx) => {
  const rec = ctx.recorder();
  const x = ctx.tensor([2, 3, 4]), o = ctx.tensor([2, 4]);
  assert.throws(() => sum(rec, x, { axis: 3 }), /axis 3 is out of range for x \[2,3,4\] \(rank 3\)/);
  assert.throws(() => sum(rec, x, { axis: 1.5 }), /axis 1.5 is out of range/);
  assert.throws(
    () => sum(rec, x, { axis: 2, out: o }),
    /sum out \(x is \[2,3,4\], axis 2\): shape \[2,4\] does not match expected \[2,3\]/,
  );
  ctx.release(x, o);
});
