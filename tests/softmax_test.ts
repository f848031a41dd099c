import { assertClose, gpuTest } from "./_gpu.ts";
import { softmax } from "../src/ops/softmax.ts";
import { softmaxRef } from "../src/ref/softmax.ts";
import { randn } from "../src/ref/random.ts";
import { numel } from "../src/gpu/tensor.ts";
import assert from "assert";

const cases: { shape: number[]; scale?: number; spread?: number }[] = [
  { shape: [2, 3, 41, 77], scale: 0.125 }, // text cross-attention: 77 keys
  { shape: [6, 1000] }, // classifier-sized rows
  { shape: [3, 4096], scale: 1 / 8 }, // self-attention at 64×64
  { shape: [2, 5000] }, // longer than any workgroup sweep, not a power of two
  { shape: [9, 7], spread: 30 }, // rows shorter than the 32 invocations per row
  { shape: [5, 300], spread: 200 }, // logits in the hundreds: exp overflows without the max subtraction
  { shape: [1] },
];

for (const { shape, scale = 1, spread = 1 } of cases) {
  gpuTest(`softmax ${JSON.stringify(shape)} scale=${scale} spread=${spread}`, async (ctx) => {
    const len = shape[shape.length - 1];
    const x = randn(numel(shape), 31, spread);
    const tx = ctx.upload(x, shape);
    const rec = ctx.recorder();
    const out = softmax(rec, tx, { scale });
    await rec.submit();
    const want = new Float32Array(x.length);
    softmaxRef(want, x, x.length / len, len, scale);
    assert.deepEqual(out.shape, shape);
    assertClose(await ctx.readF32(out), want, 1e-5, "softmax");
    ctx.release(tx, out);
  });
}

gpuTest("softmax gives zero weight to -Infinity logits (masking)", async (ctx) => {
  const len = 77, rows = 4;
  const x = randn(rows * len, 32);
  for (let r = 0; r < rows; r++) for (let j = 10 + r; j < len; j += 3) x[r * len + j] = -Infinity;
  const tx = ctx.upload(x, [rows, len]), out = ctx.tensor([rows, len]);
  const rec = ctx.recorder();
  softmax(rec, tx, { out });
  await rec.submit();
  const got = await ctx.readF32(out), want = new Float32Array(x.length);
  softmaxRef(want, x, rows, len);
  assertClose(got, want, 1e-5, "masked softmax");
  for (let i = 0; i < x.length; i++) if (x[i] === -Infinity) assert.equal(got[i], 0);
  ctx.release(tx, out);
});

gpuTest("softmax validates out, naming the shapes", (ctx) => {
  const rec = ctx.recorder();
  const x = ctx.tensor([4, 77]), o = ctx.tensor([4, 76]);
  assert.throws(() => softmax(rec, x, { out: o }), /softmax out: shape \[4,76\] does not match expected \[4,77\]/);
  assert.throws(() => softmax(rec, x, { out: x }), /must not share a buffer/);
  assert.throws(() => softmax(rec, x, { scale: NaN }), /scale must be finite/);
  ctx.release(x, o);
});
