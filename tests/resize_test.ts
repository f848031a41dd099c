/** resize.wgsl against the float64 Pillow-algorithm reference, on awkward shapes, plus crops and error messages. */
import assert from "assert";
import { assertClose, gpuTest } from "./_gpu.ts";
import { centerCropBox, resize, type ResizeOptions } from "../src/ops/resize.ts";
import { resizeCoeffs, resizeRef } from "../src/ref/resize.ts";
import { randu } from "../src/ref/random.ts";
import { numel } from "../src/gpu/tensor.ts";

const cases: { x: number[]; opts: ResizeOptions; what: string }[] = [
  { x: [2, 3, 37, 53], opts: { size: [16, 24] }, what: "bicubic antialiased downscale, H≠W, odd sizes" },
  { x: [1, 3, 7, 5], opts: { size: [19, 13], filter: "bilinear" }, what: "bilinear upscale" },
  { x: [1, 3, 45, 31], opts: { size: [20, 20], antialias: false }, what: "bicubic downscale without antialiasing" },
  { x: [3, 1, 64, 40], opts: { size: [24, 24], ...centerCropBox(64, 40, 24) }, what: "short side + centre crop" },
  {
    x: [1, 3, 50, 90],
    opts: { size: [17, 17], filter: "bilinear", ...centerCropBox(50, 90, 17) },
    what: "bilinear crop",
  },
  {
    x: [2, 3, 33, 33],
    opts: { size: [16, 16], channelAffine: { scale: [2, -1, 0.5], shift: [0.1, 0.2, -3] } },
    what: "affine",
  },
  { x: [1, 3, 12, 30], opts: { size: [12, 10] }, what: "width only (one pass, H unchanged)" },
  {
    x: [2, 3, 30, 12],
    opts: { size: [10, 12], channelAffine: { scale: [1, 2, 3], shift: [0, 0, 1] } },
    what: "height only + affine",
  },
];

for (const { x: shape, opts, what } of cases) {
  gpuTest(`resize ${JSON.stringify(shape)} → ${JSON.stringify(opts.size)}: ${what}`, async (ctx) => {
    const data = randu(numel(shape), 7, 0, 1);
    const x = ctx.upload(data, shape);
    const rec = ctx.recorder();
    const out = resize(rec, x, opts);
    await rec.submit();
    assert.deepEqual(out.shape, [shape[0], shape[1], ...opts.size]);
    assertClose(await ctx.readF32(out), resizeRef(data, shape, opts), 1e-5, what);
    ctx.release(x, out);
  });
}

gpuTest("resize to the same size is an exact copy (bicubic and bilinear)", async (ctx) => {
  const shape = [1, 3, 9, 14];
  const data = randu(numel(shape), 3);
  const x = ctx.upload(data, shape);
  for (const filter of ["bicubic", "bilinear"] as const) {
    const rec = ctx.recorder();
    const out = resize(rec, x, { size: [9, 14], filter });
    await rec.submit();
    assert.deepEqual(await ctx.readF32(out), data, filter);
    ctx.release(out);
  }
  ctx.release(x);
});

Deno.test("reference: weights sum to 1, a constant image stays constant, bilinear ×2 upscale interpolates", () => {
  for (const c of resizeCoeffs(100, 37, 3, 30, "bicubic", true)) {
    assert.ok(Math.abs(c.weights.reduce((a, b) => a + b, 0) - 1) < 1e-12);
  }
  const flat = resizeRef(new Float64Array(3 * 20 * 30).fill(0.25), [1, 3, 20, 30], { size: [7, 11] });
  assert.ok(flat.every((v) => Math.abs(v - 0.25) < 1e-12));
  const ramp = resizeRef([0, 1, 2, 3], [1, 1, 1, 4], { size: [1, 8], filter: "bilinear" });
  assert.deepEqual([...ramp], [0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3]);
});

Deno.test("centerCropBox follows torchvision: short side, floor of the long side, round-half-even offset", () => {
  assert.deepEqual(centerCropBox(512, 768, 224), { resizedSize: [224, 336], offset: [0, 56] });
  assert.deepEqual(centerCropBox(640, 480, 224), { resizedSize: [298, 224], offset: [37, 0] }); // 74/2
  assert.deepEqual(centerCropBox(100, 105, 20), { resizedSize: [20, 21], offset: [0, 0] }); // 0.5 → 0
  assert.deepEqual(centerCropBox(100, 115, 20), { resizedSize: [20, 23], offset: [0, 2] }); // 1.5 → 2
  assert.deepEqual(centerCropBox(224, 224, 224), { resizedSize: [224, 224], offset: [0, 0] });
});

gpuTest("resize rejects bad shapes, windows and affines, naming them", (ctx) => {
  const x = ctx.tensor([1, 3, 8, 8]), x5 = ctx.tensor([1, 5, 8, 8]);
  const rec = ctx.recorder();
  assert.throws(
    () => resize(rec, ctx.tensor([3, 8, 8]), { size: [4, 4] }),
    /resize: x \[3,8,8\] must be \[B, C, H, W\]/,
  );
  assert.throws(
    () => resize(rec, x, { size: [4, 4], resizedSize: [4, 6], offset: [1, 0] }),
    /window \[4,4\] at \[1,0\] does not fit the resized image \[4,6\]/,
  );
  assert.throws(() => resize(rec, x, { size: [0, 4] }), /sizes ≥ 1/);
  assert.throws(
    () => resize(rec, x5, { size: [4, 4], channelAffine: { scale: [1], shift: [1] } }),
    /at most 4 channels/,
  );
  assert.throws(
    () => resize(rec, x, { size: [4, 4], channelAffine: { scale: [1, 2], shift: [0, 0, 0] } }),
    /needs 3 scales and shifts/,
  );
  ctx.release(x, x5);
});
