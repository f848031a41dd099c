import { assertClose, gpuTest } from "./_gpu.ts";
import { conv2d, type Conv2dKernel } from "../src/ops/conv2d.ts";
import { conv2dRef } from "../src/ref/conv2d.ts";
import { randn } from "../src/ref/random.ts";
import { numel } from "../src/gpu/tensor.ts";
import assert from "assert";

interface Case {
  x: number[];
  w: number[];
  stride?: 1 | 2;
  padding?: number | [number, number, number, number];
  bias?: boolean;
}

const cases: Case[] = [
  { x: [1, 5, 9, 12], w: [7, 5, 3, 3], padding: 1, bias: true }, // odd channels, H ≠ W
  { x: [2, 5, 9, 15], w: [7, 5, 3, 3], stride: 2, padding: 1 },
  { x: [1, 8, 9, 13], w: [6, 8, 3, 3], stride: 2, padding: [0, 1, 0, 1], bias: true }, // VAE downsampler
  { x: [2, 3, 10, 7], w: [20, 3, 3, 3] }, // no padding, Cin = 3 packed to 4
  { x: [2, 5, 9, 12], w: [7, 5, 1, 1], bias: true }, // 1×1 through the packed path (Cin odd)
  { x: [2, 8, 6, 10], w: [12, 8, 1, 1], bias: true }, // 1×1 as a plain matmul
  { x: [1, 4, 8, 6], w: [3, 4, 1, 1], stride: 2 },
  { x: [1, 12, 20, 19], w: [9, 12, 3, 3], padding: [2, 0, 1, 3], bias: true }, // uneven padding, 4 pixel tiles
  { x: [2, 6, 5, 8], w: [70, 6, 3, 3], padding: 1, bias: true }, // Cout spans two workgroups
  { x: [1, 4, 4, 5], w: [300, 4, 3, 3], padding: 1, bias: true }, // 20 pixels: all 8 invocations along Cout
  { x: [2, 5, 9, 13], w: [7, 5, 3, 3], padding: 1, bias: true }, // Ho·Wo = 117, odd: "auto" takes the naive kernel
];

for (const c of cases) {
  const name = `conv2d x${JSON.stringify(c.x)} w${JSON.stringify(c.w)} stride ${c.stride ?? 1} pad ` +
    `${JSON.stringify(c.padding ?? 0)}${c.bias ? " +bias" : ""}`;
  for (const kernel of ["auto", "naive"] as Conv2dKernel[]) {
    gpuTest(`${name} (${kernel})`, async (ctx) => {
      const x = randn(numel(c.x), 1), w = randn(numel(c.w), 2, 0.3), bias = c.bias ? randn(c.w[0], 3) : undefined;
      const tx = ctx.upload(x, c.x), tw = ctx.upload(w, c.w), tb = bias && ctx.upload(bias, [c.w[0]]);
      const rec = ctx.recorder();
      const out = conv2d(rec, tx, tw, { bias: tb, stride: c.stride, padding: c.padding, kernel });
      await rec.submit();
      const want = conv2dRef(x, c.x, w, c.w, { bias, stride: c.stride, padding: c.padding });
      assert.deepEqual(out.shape, want.shape);
      assertClose(await ctx.readF32(out), want.out, 1e-5, name);
      ctx.release(tx, tw, tb, out);
    });
  }
}

gpuTest("conv2d releases its packing scratch after submit", async (ctx) => {
  const tx = ctx.upload(randn(2 * 5 * 6 * 8, 1), [2, 5, 6, 8]), tw = ctx.upload(randn(3 * 5 * 9, 2), [3, 5, 3, 3]);
  const before = ctx.memory.current;
  const rec = ctx.recorder();
  const out = conv2d(rec, tx, tw, { padding: 1 });
  await rec.submit();
  await ctx.sync();
  assert.equal(ctx.memory.current - before, out.buffer.size, "only the output stays allocated");
  ctx.release(tx, tw, out);
});

gpuTest("conv2d error messages name both shapes", (ctx) => {
  const rec = ctx.recorder();
  const x = ctx.tensor([1, 5, 8, 8]), w = ctx.tensor([7, 4, 3, 3]), w5 = ctx.tensor([7, 5, 3, 3]);
  assert.throws(() => conv2d(rec, x, w), /x \[1,5,8,8\] has 5 channels, w \[7,4,3,3\] expects 4/);
  assert.throws(() => conv2d(rec, x, w5, { bias: ctx.tensor([5]) }), /bias.*\[7,5,3,3\]/);
  assert.throws(() => conv2d(rec, ctx.tensor([5, 8, 8]), w5), /x \[5,8,8\] must be \[B,Cin,H,W\]/);
  assert.throws(() => conv2d(rec, ctx.tensor([1, 5, 2, 2]), w5), /larger than x \[1,5,2,2\]/);
  assert.throws(() => conv2d(rec, x, w5, { stride: 3 as 1 }), /stride 3/);
  assert.throws(() => conv2d(rec, x, w5, { padding: [1, 1] as unknown as number }), /padding \[1,1\]/);
  assert.throws(() => conv2d(rec, ctx.tensor([1, 5, 9, 13]), w5, { padding: 1, kernel: "tiled" }), /9·13/);
});
