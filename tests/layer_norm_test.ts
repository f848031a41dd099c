import { assertClose, gpuTest } from "./_gpu.ts";
import { layerNorm } from "../src/ops/layer_norm.ts";
import { layerNormRef } from "../src/ref/layer_norm.ts";
import { randn } from "../src/ref/random.ts";
import { numel } from "../src/gpu/tensor.ts";
import assert from "assert";

const cases: { shape: number[]; eps: number; offset?: number }[] = [
  { shape: [2, 77, 768], eps: 1e-5 }, // CLIP
  { shape: [3, 37, 320], eps: 1e-5, offset: 4 }, // U-Net transformer at 320 channels, odd token count
  { shape: [5, 1280], eps: 1e-6 },
  { shape: [7, 3], eps: 1e-2 }, // rows shorter than the workgroup
  { shape: [1000], eps: 1e-5 }, // a single row, D not a power of two
  { shape: [2, 3, 2, 1027], eps: 1e-5, offset: -2 }, // D above the largest workgroup, rank 4
  { shape: [66000, 3], eps: 1e-5 }, // more rows than workgroups per grid dimension: the grid folds over y
];

for (const { shape, eps, offset = 0 } of cases) {
  gpuTest(`layerNorm ${JSON.stringify(shape)} eps=${eps}`, async (ctx) => {
    const d = shape[shape.length - 1], rows = numel(shape) / d;
    const x = randn(numel(shape), 21).map((v) => offset + v);
    const w = randn(d, 22).map((v) => 1 + 0.2 * v), b = randn(d, 23, 0.1);
    const tx = ctx.upload(x, shape), tw = ctx.upload(w, [d]), tb = ctx.upload(b, [d]);
    const tstats = ctx.tensor([...shape.slice(0, -1), 2]);
    const rec = ctx.recorder();
    const out = layerNorm(rec, tx, { weight: tw, bias: tb, eps, stats: tstats });
    await rec.submit();
    const want = new Float32Array(x.length), wantStats = new Float32Array(rows * 2);
    layerNormRef(want, x, w, b, rows, d, eps, wantStats);
    assert.deepEqual(out.shape, shape);
    assertClose(await ctx.readF32(out), want, 1e-5, "layerNorm out");
    assertClose(await ctx.readF32(tstats), wantStats, 1e-5, "layerNorm stats (mean, rstd)");
    ctx.release(tx, tw, tb, tstats, out);
  });
}

gpuTest("layerNorm validates affine shapes and aliasing, naming the shapes", (ctx) => {
  const rec = ctx.recorder();
  const x = ctx.tensor([2, 77, 768]), w = ctx.tensor([768]), w2 = ctx.tensor([320]);
  assert.throws(
    () => layerNorm(rec, x, { weight: w, bias: w2 }),
    /bias \(x is \[2,77,768\]\): shape \[320\] does not match expected \[768\]/,
  );
  assert.throws(() => layerNorm(rec, x, { weight: w, bias: w, out: x }), /must not share a buffer/);
  assert.throws(() => layerNorm(rec, x, { weight: w, bias: w, out: w }), /out: shape \[768\] does not match expected/);
  ctx.release(x, w, w2);
});
