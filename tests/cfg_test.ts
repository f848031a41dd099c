import assert from "assert";
import { assertClose, gpuTest } from "./_gpu.ts";
import { guidance, toRgba8 } from "../src/ops/cfg.ts";
import { randn } from "../src/ref/random.ts";

for (const shape of [[2, 4, 16, 16], [4, 3, 5, 7], [2, 77]]) {
  gpuTest(`guidance u + g(c − u) on ${JSON.stringify(shape)}`, async (ctx) => {
    const n = shape.reduce((a, b) => a * b, 1), half = n / 2;
    const x = randn(n, 3);
    const t = ctx.upload(x, shape);
    const rec = ctx.recorder();
    const out = guidance(rec, t, 7.5);
    await rec.submit();
    const want = new Float32Array(half).map((_, i) =>
      Math.fround(x[i] + Math.fround(7.5 * Math.fround(x[i + half] - x[i])))
    );
    assertClose(await ctx.readF32(out), want, 1e-7, "guidance");
    assert.deepEqual(out.shape, [shape[0] / 2, ...shape.slice(1)]);
    ctx.release(t, out);
  });
}

gpuTest("toRgba8: round(clamp(x/2+0.5)·255) per channel, packed RGBA", async (ctx) => {
  const B = 2, H = 3, W = 5, x = randn(B * 3 * H * W, 4, 1.5);
  const t = ctx.upload(x, [B, 3, H, W]);
  const rec = ctx.recorder();
  const px = toRgba8(rec, t);
  await rec.submit();
  const got = await ctx.read(px) as Uint32Array;
  const to8 = (v: number) => {
    const y = Math.min(1, Math.max(0, Math.fround(Math.fround(v / 2) + 0.5))) * 255;
    const r = Math.round(y);
    return Math.abs(y % 1) === 0.5 && r % 2 ? r - 1 : r; // half to even
  };
  for (let b = 0; b < B; b++) {
    for (let q = 0; q < H * W; q++) {
      const v = got[b * H * W + q];
      const base = b * 3 * H * W + q;
      assert.deepEqual([v & 255, (v >>> 8) & 255, (v >>> 16) & 255, v >>> 24], [
        to8(x[base]),
        to8(x[base + H * W]),
        to8(x[base + 2 * H * W]),
        255,
      ]);
    }
  }
  ctx.release(t, px);
});
