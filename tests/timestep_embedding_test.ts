import { assertClose, gpuTest } from "./_gpu.ts";
import { timestepEmbedding, timestepFrequencies } from "../src/ops/timestep_embedding.ts";
import { timestepEmbeddingRef } from "../src/ref/timestep_embedding.ts";
import { relL2 } from "../src/ref/compare.ts";
import assert from "assert";

// DDIM's integer steps, Euler's fractional ones (schedulers fixture), 0 and the end of the schedule
const T = Float32Array.from([999, 946.4201, 801, 500.25, 21.5, 1, 0]);

const cases: [string, number, Parameters<typeof timestepEmbeddingRef>[2]][] = [
  ["SD v1 time_proj", 320, { flipSinToCos: true, downscaleFreqShift: 0 }],
  ["diffusers defaults", 32, {}],
  ["odd dim, scale and period", 33, { flipSinToCos: true, downscaleFreqShift: 0, scale: 1.5, maxPeriod: 1000 }],
  ["tiny", 2, { downscaleFreqShift: 0 }],
  ["dim 1: padding only", 1, {}],
  ["large dim", 2048, { flipSinToCos: true, downscaleFreqShift: 0 }],
];
for (const [name, dim, opts] of cases) {
  gpuTest(`timestepEmbedding ${name}: dim ${dim} ${JSON.stringify(opts)}`, async (ctx) => {
    const t = ctx.upload(T, [T.length]);
    const rec = ctx.recorder();
    const out = timestepEmbedding(rec, t, dim, opts);
    await rec.submit();
    assert.deepEqual(out.shape, [T.length, dim]);
    const got = await ctx.readF32(out);
    const want = timestepEmbeddingRef(T, dim, opts);
    const err = assertClose(got, want, 1e-6, name);
    // elementwise too: every value within 4e-7 of sin/cos of diffusers' f32 argument
    for (let i = 0; i < got.length; i++) assert.ok(Math.abs(got[i] - want[i]) < 4e-7, `${name}: element ${i}`);
    if (dim === 320) {
      // against the unrounded float64 formula, rounding the arguments to f32 (as torch does) costs ~6e-6
      const exact = relL2(got, timestepEmbeddingRef(T, dim, { ...opts, exact: true }));
      assert.ok(exact < 1e-5 && exact > err, `vs exact float64: ${exact}`);
    }
    ctx.release(t, out);
  });
}

Deno.test("timestepFrequencies: SD's table is within f32 rounding of the float64 formula", () => {
  const f = timestepFrequencies(320, 0);
  assert.equal(f.length, 160);
  assert.equal(f[0], 1);
  for (let j = 0; j < 160; j++) {
    const exact = Math.exp(-Math.log(10000) * j / 160);
    assert.ok(Math.abs(f[j] / exact - 1) < 1e-6, `freq ${j}: ${f[j]} vs ${exact}`);
  }
});

gpuTest("timestepEmbedding errors", (ctx) => {
  const rec = ctx.recorder();
  const t2 = ctx.tensor([2, 1], "f32", "t2"), t = ctx.tensor([2], "f32", "t"), ti = ctx.tensor([2], "i32", "ti");
  assert.throws(() => timestepEmbedding(rec, t2, 320), /timestepEmbedding: timesteps \[2,1\] must be 1-D \[B\]/);
  assert.throws(() => timestepEmbedding(rec, ti, 320), /timestepEmbedding: "ti" \[2\] is i32, expected f32/);
  assert.throws(() => timestepEmbedding(rec, t, 0), /dim must be an integer in \[1, 2049\], got 0/);
  assert.throws(() => timestepEmbedding(rec, t, 4096), /got 4096/);
  assert.throws(() => timestepEmbedding(rec, t, 2), /half the dim \(1\) minus downscaleFreqShift \(1\) must be > 0/);
  ctx.release(t2, t, ti);
});
