import { gpuTest } from "./_gpu.ts";
import { maxTopK, topk } from "../src/ops/topk.ts";
import { topkRef } from "../src/ref/topk.ts";
import { randn } from "../src/ref/random.ts";
import { numel } from "../src/gpu/tensor.ts";
import type { GpuContext } from "../src/gpu/mod.ts";
import assert from "assert";

/** Runs topk on the GPU and asserts values and indices identical to the reference. */
async function check(ctx: GpuContext, x: Float32Array, shape: number[], k: number, what: string): Promise<void> {
  const len = shape[shape.length - 1], rows = numel(shape) / len;
  const tx = ctx.upload(x, shape);
  const rec = ctx.recorder();
  const { values, indices } = topk(rec, tx, { k });
  await rec.submit();
  assert.deepEqual(values.shape, [...shape.slice(0, -1), k]);
  assert.equal(indices.dtype, "u32");
  const wantV = new Float32Array(rows * k), wantI = new Uint32Array(rows * k);
  topkRef(wantV, wantI, x, rows, len, k);
  const gotV = await ctx.readF32(values), gotI = await ctx.read(indices) as Uint32Array;
  for (let i = 0; i < rows * k; i++) {
    if (gotI[i] !== wantI[i] || !Object.is(gotV[i], wantV[i])) {
      const r = Math.floor(i / k);
      throw new Error(
        `${what}: row ${r} slot ${i % k}: got (${gotV[i]}, #${gotI[i]}), want (${wantV[i]}, #${wantI[i]})`,
      );
    }
  }
  ctx.release(tx, values, indices);
}

const random: [number[], number][] = [
  [[3, 5120], 20], // SAE latents
  [[2, 5120], 32],
  [[3, 5120], 256], // AuxK
  [[7, 100], 1],
  [[4, 100], 100], // k = row length
  [[6, 64], 10],
  [[3, 257], 17],
  [[3, 1500], 40],
  [[2, 3, 129], 64],
  [[5, 5], 3], // rows shorter than the workgroup
  [[2, 20000], 7], // longer rows than the SAE's
  [[1, 3000], 2048], // the largest k on a 32 KB device
];
for (const [shape, k] of random) {
  gpuTest(`topk ${JSON.stringify(shape)} k=${k}`, async (ctx) => {
    if (k > maxTopK(ctx.limits)) return;
    await check(ctx, randn(numel(shape), 51), shape, k, "topk");
  });
}

gpuTest("topk breaks ties by the lower index (values on a coarse grid, ties across the threshold)", async (ctx) => {
  for (const [len, k] of [[1000, 50], [5120, 20], [300, 299], [64, 1]]) {
    const x = randn(4 * len, 52).map((v) => Math.round(v * 2) / 2);
    await check(ctx, x, [4, len], k, `ties len=${len} k=${k}`);
  }
});

gpuTest("topk on rows where every value is equal", async (ctx) => {
  await check(ctx, new Float32Array(3 * 700).fill(1.5), [3, 700], 40, "all equal");
  await check(ctx, new Float32Array(2 * 300).fill(-2), [2, 300], 300, "all equal, k = len");
});

gpuTest("topk on negative values, ±0 and ±inf", async (ctx) => {
  await check(ctx, randn(3 * 1000, 53).map((v) => v - 10), [3, 1000], 25, "all negative");
  const x = randn(2 * 50, 54);
  x.set([0, -0, Infinity, -Infinity, -0, 0, 1e-30, -1e-30], 0);
  x.set([-Infinity, -Infinity, 0, -0], 50);
  await check(ctx, x, [2, 50], 50, "signed zeros and infinities");
});

gpuTest("topk validates k and out, naming the shapes", (ctx) => {
  const rec = ctx.recorder();
  const x = ctx.tensor([4, 100]);
  assert.throws(() => topk(rec, x, { k: 101 }), /k = 101 must be an integer in \[1, 100\] for x \[4,100\]/);
  assert.throws(() => topk(rec, x, { k: 0 }), /k = 0 must be/);
  const v = ctx.tensor([4, 10]), i = ctx.tensor([4, 10], "u32"), bad = ctx.tensor([4, 10], "i32");
  assert.throws(
    () => topk(rec, x, { k: 11, out: { values: v, indices: i } }),
    /out.values \(x is \[4,100\], k = 11\): shape \[4,10\] does not match expected \[4,11\]/,
  );
  assert.throws(() => topk(rec, x, { k: 10, out: { values: v, indices: bad } }), /indices u32, got f32 and i32/);
  const big = ctx.tensor([1, 100000]);
  assert.throws(() => topk(rec, big, { k: 99999 }), /exceeds \d+, the most this device's workgroup memory/);
  ctx.release(x, v, i, bad, big);
});
