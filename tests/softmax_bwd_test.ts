import { assertClose, gpuTest } from "./_gpu.ts";
import { fdGrad } from "./_fd.ts";
import { softmax, softmaxBackward } from "../src/ops/softmax.ts";
import { softmaxBackwardRef, softmaxRef } from "../src/ref/softmax.ts";
import { randn } from "../src/ref/random.ts";
import { numel } from "../src/gpu/tensor.ts";
import assert from "assert";

// Moderate spreads: with a near-one-hot row, dx ~ the small probabilities while dout − Σ dout·y rounds at 1e-7 in
// f32, so the relative error measures the conditioning rather than the kernel.
const cases: { shape: number[]; scale?: number; spread?: number; masked?: boolean }[] = [
  { shape: [2, 3, 41, 77], scale: 0.125 }, // text cross-attention: 77 keys
  { shape: [3, 4096], scale: 1 / 8 }, // self-attention at 64×64
  { shape: [2, 5000] }, // longer than any workgroup sweep, not a power of two
  { shape: [9, 7], spread: 3 }, // rows shorter than the 32 invocations per row
  { shape: [4, 33], masked: true }, // −∞ logits (masks): y = 0, dx = 0 there
  { shape: [1] },
];

for (const { shape, scale = 1, spread = 1, masked = false } of cases) {
  gpuTest(
    `softmaxBackward ${JSON.stringify(shape)} scale=${scale} spread=${spread}${masked ? " masked" : ""}`,
    async (ctx) => {
      const len = shape[shape.length - 1], rows = numel(shape) / len;
      const x = randn(numel(shape), 100, spread).map((v, i) => (masked && i % 5 === 1 ? -Infinity : v));
      const y = new Float32Array(x.length);
      softmaxRef(y, x, rows, len, scale);
      const dout = randn(x.length, 101), prior = randn(x.length, 102);
      const ty = ctx.upload(y, shape), tdout = ctx.upload(dout, shape);
      const acc = ctx.upload(prior, shape), over = ctx.upload(prior, shape);
      const rec = ctx.recorder();
      assert.deepEqual(softmaxBackward(rec, { y: ty, dout: tdout }, { scale, dx: acc }), { dx: acc });
      softmaxBackward(rec, { y: ty, dout: tdout }, { scale, dx: over, accumulate: false });
      await rec.submit();
      const want = softmaxBackwardRef(y, dout, rows, len, scale);
      const err = assertClose(await ctx.readF32(over), want, 1e-5, "dx overwritten");
      assertClose(await ctx.readF32(acc), want.map((v, i) => v + prior[i]), 1e-5, "dx accumulated");
      console.log(`  rel L2: dx ${err.toExponential(1)}`);
      ctx.release(ty, tdout, acc, over);
    },
  );
}

for (const [shape, scale] of [[[3, 6], 0.7], [[2, 2, 5], 1]] as const) {
  gpuTest(`softmaxBackward ${JSON.stringify(shape)} scale=${scale} matches finite differences`, async (ctx) => {
    const len = shape[shape.length - 1], rows = numel(shape) / len;
    const x = randn(numel(shape), 110, 1.5), probe = randn(x.length, 111);
    const tx = ctx.upload(x, [...shape]), tp = ctx.upload(probe, [...shape]), dx = ctx.tensor([...shape]);
    const rec = ctx.recorder();
    const y = softmax(rec, tx, { scale });
    softmaxBackward(rec, { y, dout: tp }, { scale, dx, accumulate: false });
    await rec.submit();
    const fwd = (v: ArrayLike<number>) => {
      const out = new Float64Array(v.length);
      softmaxRef(out, v, rows, len, scale);
      return out;
    };
    const err = assertClose(await ctx.readF32(dx), fdGrad(fwd, x, probe), 1e-3, "dx vs finite differences");
    console.log(`  rel err vs FD: dx ${err.toExponential(1)}`);
    ctx.release(tx, tp, dx, y);
  });
}

gpuTest("softmaxBackward without dx does nothing; errors name the shapes", (ctx) => {
  const rec = ctx.recorder();
  const y = ctx.tensor([4, 77], "f32", "y"), d2 = ctx.tensor([4, 76], "f32", "d2");
  assert.deepEqual(softmaxBackward(rec, { y, dout: y }), {});
  assert.equal(rec.dispatches, 0);
  assert.throws(
    () => softmaxBackward(rec, { y, dout: d2 }),
    /softmax backward: dout "d2" \(y is \[4,77\]\): shape \[4,76\] does not match expected \[4,77\]/,
  );
  assert.throws(() => softmaxBackward(rec, { y, dout: y }, { dx: d2 }), /dx "d2": shape \[4,76\] does not match/);
  assert.throws(() => softmaxBackward(rec, { y, dout: d2 }, { dx: y }), /dout "d2"/);
  assert.throws(() => softmaxBackward(rec, { y, dout: y }, { dx: y }), /dx "y" shares its buffer with input "y"/);
  assert.throws(() => softmaxBackward(rec, { y, dout: y }, { scale: NaN }), /scale must be finite/);
  ctx.release(y, d2);
});
