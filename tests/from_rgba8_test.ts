/**
 * kernels/from_rgba8.wgsl against the CPU reference: planar channels (1–4, with per-channel affine maps, batches
 * of awkward sizes), masks in the three modes (auto: a cut-out image and an opaque one in the same batch), the
 * error messages, and `readMask`/`readMaskPng` on PNG files (errors name the file).
 */
import assert from "assert";
import { assertClose, gpuTest } from "./_gpu.ts";
import { fromRgba8, maskFromRgba8, type MaskMode } from "../src/ops/from_rgba8.ts";
import { fromRgba8Ref, maskFromRgba8Ref } from "../src/ref/from_rgba8.ts";
import { encodePng } from "../src/io/png.ts";
import { maskFromImage, readMask, readMaskPng } from "../src/io/mask.ts";
import { rgbaToPlanar } from "../src/sae/collect_pooled.ts";
import { rng } from "../src/ref/random.ts";

/** Random packed pixels; `opaque` images get alpha 255 everywhere. */
function pixels(n: number, seed: number, opaque = false): Uint32Array {
  const r = rng(seed);
  return Uint32Array.from({ length: n }, () => {
    const b = [0, 1, 2, 3].map(() => Math.floor(r.uniform() * 256));
    if (opaque) b[3] = 255;
    return (b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24)) >>> 0;
  });
}

const planarCases: [number[], number, number[] | number, number[] | number][] = [
  [[7, 5], 3, 1, 0], // [H, W]: the byte values
  [[2, 9, 13], 3, 1 / 127.5, -1], // [−1, 1]
  [[3, 1, 17], 4, [1, 2, 3, 4], [0, -1, 0.5, 2]],
  [[1, 33, 31], 1, 1 / 255, 0],
];
for (const [shape, C, scale, shift] of planarCases) {
  gpuTest(`fromRgba8 ${JSON.stringify(shape)} → ${C} channels`, async (ctx) => {
    const B = shape.length === 3 ? shape[0] : 1, hw = shape.at(-1)! * shape.at(-2)!;
    const host = pixels(B * hw, hw + C);
    const px = ctx.upload(host, shape, "u32");
    const rec = ctx.recorder();
    const out = fromRgba8(rec, px, { channels: C, scale, shift });
    await rec.submit();
    assert.deepEqual(out.shape, [B, C, shape.at(-2), shape.at(-1)]);
    const vec = (v: number[] | number) => typeof v === "number" ? [v, v, v, v] : v;
    const want = fromRgba8Ref(host, B, hw, C, vec(scale), vec(shift));
    assertClose(await ctx.readF32(out), want, 1e-6, `fromRgba8 ${shape}`);
    if (scale === 1 && shift === 0) assert.deepEqual(await ctx.readF32(out), want); // bytes: exact
    ctx.release(px, out);
  });
}

gpuTest("maskFromRgba8: alpha, luminance and auto over a batch with a cut-out and an opaque image", async (ctx) => {
  const H = 11, W = 7, hw = H * W;
  // image 0: opaque (auto → luminance); image 1: one pixel not opaque (auto → alpha); image 2: random alpha
  const host = new Uint32Array(3 * hw);
  host.set(pixels(hw, 1, true));
  const one = pixels(hw, 2, true);
  one[40] = (one[40] & 0x00ffffff | (254 << 24)) >>> 0;
  host.set(one, hw);
  host.set(pixels(hw, 3), 2 * hw);
  const px = ctx.upload(host, [3, H, W], "u32");
  for (const mode of ["alpha", "luminance", "auto"] as MaskMode[]) {
    const rec = ctx.recorder();
    const out = maskFromRgba8(rec, px, { mode });
    await rec.submit();
    assert.deepEqual(out.shape, [3, H, W]);
    const got = await ctx.readF32(out), want = maskFromRgba8Ref(host, 3, hw, mode);
    assertClose(got, want, 1e-6, `mask ${mode}`);
    assert.ok(got.every((v) => v >= 0 && v <= 1), `mask ${mode} in [0, 1]`);
    if (mode === "auto") {
      // image 0 read as luminance, images 1 and 2 as alpha
      assertClose(got.subarray(0, hw), maskFromRgba8Ref(host.subarray(0, hw), 1, hw, "luminance"), 1e-6, "auto 0");
      assert.equal(got[hw + 40], Math.fround(254 / 255));
      assert.equal(got[hw + 41], 1);
    }
    ctx.release(out);
  }
  ctx.release(px);
});

gpuTest("fromRgba8 / maskFromRgba8 errors name the op and the shape", (ctx) => {
  const rec = ctx.recorder();
  const f = ctx.tensor([2, 3], "f32", "floats");
  const p = ctx.tensor([2, 3], "u32", "px");
  const p4 = ctx.tensor([1, 2, 3, 4], "u32", "px4");
  assert.throws(() => fromRgba8(rec, f), /fromRgba8: "floats" \[2,3\] is f32, expected u32/);
  assert.throws(() => fromRgba8(rec, p4), /fromRgba8: pixels "px4" \[1,2,3,4\] must be non-empty \[H, W\]/);
  assert.throws(() => fromRgba8(rec, p, { channels: 5 }), /channels must be 1…4.*\[2,3\]/);
  assert.throws(() => fromRgba8(rec, p, { scale: [1, 2] }), /scale \[1, 2\] must be one finite number or 3/);
  assert.throws(() => maskFromRgba8(rec, p, { mode: "red" as MaskMode }), /unknown mode "red"/);
  ctx.release(f, p, p4);
});

gpuTest("readMask / readMaskPng: a PNG mask on the GPU and on the host; errors name the file", async (ctx) => {
  const dir = await Deno.makeTempDir({ prefix: "diffscope-mask-" });
  try {
    const W = 6, H = 5;
    // a grey ramp, opaque: luminance
    const grey = Uint32Array.from({ length: W * H }, (_, i) => (0xff000000 | (i * 8) * 0x010101) >>> 0);
    await Deno.writeFile(`${dir}/grey.png`, encodePng(grey, W, H));
    const t = await readMask(ctx, `${dir}/grey.png`);
    assert.deepEqual(t.shape, [H, W]);
    const want = maskFromRgba8Ref(grey, 1, W * H, "luminance");
    assertClose(await ctx.readF32(t), want, 1e-6, "readMask grey");
    ctx.release(t);
    const host = await readMaskPng(ctx, `${dir}/grey.png`);
    assert.deepEqual([host.width, host.height], [W, H]);
    assertClose(host.data, want, 1e-6, "readMaskPng grey");
    // a cut-out (transparent background): alpha
    const cut = Uint32Array.from({ length: W * H }, (_, i) => (i % 2 ? 0xffffffff : 0x00ffffff) >>> 0);
    await Deno.writeFile(`${dir}/cut.png`, encodePng(cut, W, H));
    const c = await readMaskPng(ctx, `${dir}/cut.png`);
    assert.deepEqual([...c.data], Array.from({ length: W * H }, (_, i) => i % 2));
    await Deno.writeFile(`${dir}/bad.png`, new Uint8Array([1, 2, 3]));
    await assert.rejects(() => readMask(ctx, `${dir}/bad.png`), /bad\.png is not a readable PNG/);
    await assert.rejects(() => readMask(ctx, `${dir}/none.png`), /none\.png/);
    // conversion errors name the image too
    const short = { pixels: new Uint32Array(3), width: 2, height: 2 };
    await assert.rejects(() => maskFromImage(ctx, short, "m.png"), /m\.png: mask image 2×2 has 3 pixels/);
    const rec = ctx.recorder();
    assert.throws(() => rgbaToPlanar(rec, { ...short, name: "cat.png" }), /cat\.png: image 2×2 has 3 pixels/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
