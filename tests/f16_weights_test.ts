/**
 * f16 weight storage: matmul and conv2d with an f16 weight operand against CPU references that use the
 * f16-rounded weights (storage is the only difference), the cast kernels, and the errors.
 */
import { assertClose, gpuTest } from "./_gpu.ts";
import { matmul, type MatmulKernel } from "../src/ops/matmul.ts";
import { conv2d, type Conv2dKernel } from "../src/ops/conv2d.ts";
import { cast } from "../src/ops/cast.ts";
import { matmulRef } from "../src/ref/matmul.ts";
import { conv2dRef } from "../src/ref/conv2d.ts";
import { randn } from "../src/ref/random.ts";
import { fromF16, type GpuContext, numel, toF16 } from "../src/gpu/mod.ts";
import assert from "assert";

/** The values an f16 tensor of `x` holds (CPU round-to-nearest-even). */
const rounded = (x: Float32Array) => fromF16(toF16(x));

/** Runs `fn` with the context pretending it lacks `shader-f16`. */
async function withoutF16(ctx: GpuContext, fn: () => Promise<void> | void): Promise<void> {
  const c = ctx as { hasF16: boolean };
  const had = c.hasF16;
  c.hasF16 = false;
  try {
    await fn();
  } finally {
    c.hasF16 = had;
  }
}

interface MatmulCase {
  a: number[];
  b: number[];
  /** Which operand is the f16 weight. */
  half: "a" | "b";
  transA?: boolean;
  transB?: boolean;
  bias?: boolean;
  biasPerRow?: boolean;
  kernel?: MatmulKernel;
}

const matmulCases: MatmulCase[] = [
  { a: [2, 5, 64], b: [44, 64], half: "b", transB: true, bias: true, kernel: "tiled" }, // nn.Linear
  { a: [77, 36], b: [36, 68], half: "b", kernel: "tiled" }, // ragged tiles in M and N
  { a: [33, 40], b: [40, 132], half: "b", bias: true, kernel: "tiled" }, // N spans two workgroups
  { a: [200, 8], b: [60, 8], half: "b", transB: true, kernel: "tiled" }, // 4×2 invocations
  { a: [77, 33], b: [65, 33], half: "b", transB: true, bias: true }, // K odd: naive
  { a: [77, 33], b: [33, 65], half: "b" }, // N odd: naive (dx = dy · W of a Linear)
  { a: [20, 24], b: [2, 24, 36], half: "a", bias: true, biasPerRow: true, kernel: "tiled" }, // 1×1 conv: w @ x
  { a: [21, 13], b: [2, 13, 7], half: "a", bias: true, biasPerRow: true }, // odd: naive
];

for (const c of matmulCases) {
  const name = `matmul f16 ${c.half}: ${JSON.stringify(c.a)}${c.transA ? "ᵀ" : ""} @ ${JSON.stringify(c.b)}` +
    `${c.transB ? "ᵀ" : ""}${c.bias ? " +bias" : ""} (${c.kernel ?? "auto"})`;
  gpuTest(name, async (ctx) => {
    const a = randn(numel(c.a), 1), b = randn(numel(c.b), 2);
    const n = c.biasPerRow ? c.a.at(-2)! : c.transB ? c.b.at(-2)! : c.b.at(-1)!;
    const bias = c.bias ? randn(n, 3) : undefined;
    const ta = ctx.upload(a, c.a, c.half === "a" ? "f16" : "f32");
    const tb = ctx.upload(b, c.b, c.half === "b" ? "f16" : "f32");
    const tbias = bias && ctx.upload(bias, [n]);
    const rec = ctx.recorder();
    const opts = { transA: c.transA, transB: c.transB, biasPerRow: c.biasPerRow };
    const out = matmul(rec, ta, tb, { ...opts, bias: tbias, kernel: c.kernel });
    await rec.submit();
    const [ra, rb] = c.half === "a" ? [rounded(a), b] : [a, rounded(b)];
    const want = matmulRef(ra, c.a, rb, c.b, { ...opts, bias });
    assertClose(await ctx.readF32(out), want.out, 1e-5, name);
    ctx.release(ta, tb, tbias, out);
  });
}

interface ConvCase {
  x: number[];
  w: number[];
  stride?: 1 | 2;
  padding?: number | [number, number, number, number];
}

const convCases: ConvCase[] = [
  { x: [1, 5, 9, 12], w: [7, 5, 3, 3], padding: 1 }, // odd channels, H ≠ W: packed GEMM
  { x: [1, 8, 9, 13], w: [6, 8, 3, 3], stride: 2, padding: [0, 1, 0, 1] }, // VAE downsampler
  { x: [2, 6, 5, 8], w: [70, 6, 3, 3], padding: 1 }, // Cout spans two workgroups
  { x: [2, 8, 6, 10], w: [12, 8, 1, 1] }, // 1×1 as a plain matmul (w is matmul's a)
  { x: [2, 5, 9, 12], w: [7, 5, 1, 1] }, // 1×1 through the packed path (Cin odd)
  { x: [2, 5, 9, 13], w: [7, 5, 3, 3], padding: 1 }, // Ho·Wo odd: naive
];

for (const c of convCases) {
  const name = `conv2d f16 w: x${JSON.stringify(c.x)} w${JSON.stringify(c.w)} stride ${c.stride ?? 1} pad ` +
    JSON.stringify(c.padding ?? 0);
  for (const kernel of ["auto", "naive"] as Conv2dKernel[]) {
    gpuTest(`${name} (${kernel})`, async (ctx) => {
      const x = randn(numel(c.x), 1), w = randn(numel(c.w), 2, 0.3), bias = randn(c.w[0], 3);
      const tx = ctx.upload(x, c.x), tw = ctx.upload(w, c.w, "f16"), tb = ctx.upload(bias, [c.w[0]]);
      const rec = ctx.recorder();
      const out = conv2d(rec, tx, tw, { bias: tb, stride: c.stride, padding: c.padding, kernel });
      await rec.submit();
      const want = conv2dRef(x, c.x, rounded(w), c.w, { bias, stride: c.stride, padding: c.padding });
      assertClose(await ctx.readF32(out), want.out, 1e-5, name);
      ctx.release(tx, tw, tb, out);
    });
  }
}

gpuTest("cast f32 → f16 rounds as the CPU does; f16 → f32 is exact; odd lengths", async (ctx) => {
  const x = randn(1001, 4, 3);
  x[0] = 1 + 2 ** -11; // a tie: rounds to even (1)
  x[1] = 6e-6; // an f16 subnormal
  const tx = ctx.upload(x, [7, 143]);
  const rec = ctx.recorder();
  const h = cast(rec, tx, { to: "f16" });
  const back = cast(rec, h, { to: "f32" });
  await rec.submit();
  assert.equal(h.dtype, "f16");
  assert.deepEqual(h.shape, [7, 143]);
  const bits = new Uint16Array(await ctx.readBytes(h.buffer, 0, 2004), 0, 1001);
  const want = toF16(x);
  const diff = bits.findIndex((b, i) => b !== want[i]);
  assert.equal(
    diff,
    -1,
    `element ${diff}: ${x[diff]} became 0x${bits[diff]?.toString(16)}, CPU 0x${want[diff]?.toString(16)}`,
  );
  assert.deepEqual(await ctx.readF32(back), fromF16(want));
  ctx.release(tx, h, back);
});

gpuTest("cast bf16 words → f16", async (ctx) => {
  const x = randn(9, 5);
  const bf = new Uint16Array(10);
  for (let i = 0; i < 9; i++) bf[i] = new Uint32Array(Float32Array.of(x[i]).buffer)[0] >>> 16; // truncated: exact
  const words = ctx.tensor([5], "u32", "bf16 words");
  ctx.device.queue.writeBuffer(words.buffer, 0, bf.buffer);
  const rec = ctx.recorder();
  const h = cast(rec, words, { to: "f16", bf16Shape: [3, 3] });
  await rec.submit();
  const bfValues = new Float32Array(new Uint32Array(Array.from(bf.subarray(0, 9), (b) => b << 16)).buffer);
  assert.deepEqual(await ctx.readF32(h), rounded(bfValues));
  ctx.release(words, h);
});

gpuTest("f16 weights: errors name the missing feature and the operands", async (ctx) => {
  const x = ctx.upload(randn(8, 1), [2, 4]), w = ctx.upload(randn(12, 2), [3, 4], "f16");
  const img = ctx.upload(randn(32, 1), [1, 2, 4, 4]), cw = ctx.upload(randn(18, 2), [1, 2, 3, 3], "f16");
  const rec = ctx.recorder();
  await withoutF16(ctx, () => {
    assert.throws(() => matmul(rec, x, w, { transB: true }), /lacks the WebGPU feature "shader-f16".*"f32"/);
    assert.throws(() => conv2d(rec, img, cw, { padding: 1 }), /conv2d with f16 weight.*"shader-f16"/);
  });
  assert.throws(() => matmul(rec, w, w, { transB: true }), /both f16; at most one operand/);
  const xi = ctx.upload([1, 2], [1, 2], "i32");
  assert.throws(() => cast(rec, xi, { to: "f16" }), /cast to f16: .* is i32, expected f32/);
  await rec.submit();
  ctx.release(x, w, img, cw, xi);
});
