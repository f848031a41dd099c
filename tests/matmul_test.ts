import { assertClose, gpuTest } from "./_gpu.ts";
import { type Activation, matmul, type MatmulKernel } from "../src/ops/matmul.ts";
import { activationRef, matmulRef } from "../src/ref/matmul.ts";
import { randn } from "../src/ref/random.ts";
import { numel } from "../src/gpu/tensor.ts";
import assert from "assert";

interface Case {
  a: number[];
  b: number[];
  transA?: boolean;
  transB?: boolean;
  bias?: boolean;
  biasPerRow?: boolean;
  act?: Activation;
  alpha?: number;
  kernel?: MatmulKernel;
}

const cases: Case[] = [
  { a: [77, 33], b: [33, 65] }, // K, N not multiples of 4: naive kernel
  { a: [77, 33], b: [65, 33], transB: true, bias: true, act: "gelu" },
  { a: [3, 33, 77], b: [3, 33, 65], transA: true, act: "silu" },
  { a: [77, 36], b: [36, 68], kernel: "tiled" }, // one ragged tile in M and N
  { a: [3, 77, 36], b: [36, 68], bias: true }, // shared weight: batch folds into M
  { a: [3, 36, 20], b: [3, 36, 44], transA: true, alpha: 0.125 },
  { a: [2, 5, 64], b: [44, 64], transB: true, bias: true, act: "quick_gelu" }, // nn.Linear
  { a: [2, 12, 40], b: [2, 140, 12], transA: true, transB: true, act: "gelu" },
  { a: [1, 128], b: [96, 128], transB: true, bias: true, act: "silu" }, // M = 1
  { a: [2, 20, 24], b: [24, 36], bias: true, biasPerRow: true }, // per-row bias (1×1 conv)
  { a: [2, 1, 9, 12], b: [3, 12, 8] }, // batch dims broadcast both ways
  { a: [2, 7, 36], b: [2, 7, 136], transA: true, kernel: "tiled" }, // Aᵀ·B (weight gradient) with K % 4 ≠ 0
  { a: [33, 40], b: [40, 132], bias: true, act: "gelu", kernel: "tiled" }, // N spans two workgroups
  { a: [200, 8], b: [60, 8], transB: true, bias: true, kernel: "tiled" }, // workgroup of 4×2 invocations
  { a: [20, 8], b: [8, 520], kernel: "tiled" }, // 1×8 invocations
  { a: [300, 8], b: [8, 20], kernel: "tiled" }, // 8×1 invocations
];

for (const c of cases) {
  const name = `matmul ${JSON.stringify(c.a)}${c.transA ? "ᵀ" : ""} @ ${JSON.stringify(c.b)}${c.transB ? "ᵀ" : ""}` +
    `${c.bias ? " +bias" : ""}${c.act ? ` ${c.act}` : ""}${c.alpha ? ` ×${c.alpha}` : ""}${
      c.kernel ? ` (${c.kernel})` : ""
    }`;
  gpuTest(name, async (ctx) => {
    const a = randn(numel(c.a), 1), b = randn(numel(c.b), 2);
    const n = c.biasPerRow ? (c.transA ? c.a.at(-1)! : c.a.at(-2)!) : c.transB ? c.b.at(-2)! : c.b.at(-1)!;
    const bias = c.bias ? randn(n, 3) : undefined;
    const ta = ctx.upload(a, c.a), tb = ctx.upload(b, c.b), tbias = bias && ctx.upload(bias, [n]);
    const rec = ctx.recorder();
    const opts = { transA: c.transA, transB: c.transB, act: c.act, alpha: c.alpha, biasPerRow: c.biasPerRow };
    const out = matmul(rec, ta, tb, { ...opts, bias: tbias, kernel: c.kernel });
    await rec.submit();
    const want = matmulRef(a, c.a, b, c.b, { ...opts, bias });
    assert.deepEqual(out.shape, want.shape);
    assertClose(await ctx.readF32(out), want.out, 1e-5, name);
    ctx.release(ta, tb, tbias, out);
  });
}

gpuTest("matmul tiled kernel agrees with the naive GPU oracle on all four layouts", async (ctx) => {
  for (const [transA, transB] of [[false, false], [false, true], [true, false], [true, true]]) {
    const [M, N, K] = [52, 148, 24];
    const as = transA ? [2, K, M] : [2, M, K], bs = transB ? [N, K] : [K, N];
    const ta = ctx.upload(randn(numel(as), 4), as), tb = ctx.upload(randn(numel(bs), 5), bs);
    const rec = ctx.recorder();
    const fast = matmul(rec, ta, tb, { transA, transB, kernel: "tiled" });
    const slow = matmul(rec, ta, tb, { transA, transB, kernel: "naive" });
    await rec.submit();
    assertClose(await ctx.readF32(fast), await ctx.readF32(slow), 1e-6, `transA=${transA} transB=${transB}`);
    ctx.release(ta, tb, fast, slow);
  }
});

gpuTest("matmul activations match float64 to 1e-6 (erf-based GELU included)", async (ctx) => {
  // x [n, 4] @ I₄ puts x through the epilogue unchanged; tiled and naive kernels share it
  const n = 2000;
  const x = new Float32Array(n * 4);
  for (let i = 0; i < x.length; i++) x[i] = -10 + 20 * i / x.length;
  const eye = new Float32Array(16).map((_, i) => (i % 5 === 0 ? 1 : 0));
  const tx = ctx.upload(x, [n, 4]), ti = ctx.upload(eye, [4, 4]);
  for (const act of ["gelu", "silu", "quick_gelu"] as const) {
    for (const kernel of ["tiled", "naive"] as const) {
      const rec = ctx.recorder();
      const out = matmul(rec, tx, ti, { act, kernel });
      await rec.submit();
      const got = await ctx.readF32(out);
      let worst = 0;
      for (let i = 0; i < x.length; i++) {
        worst = Math.max(worst, Math.abs(got[i] - activationRef(act, x[i])) / Math.max(1, Math.abs(x[i])));
      }
      assert.ok(worst < 1e-6, `${act} (${kernel}): error ${worst.toExponential(2)} ≥ 1e-6`);
      ctx.release(out);
    }
  }
  ctx.release(tx, ti);
});

gpuTest("matmul error messages name both shapes", (ctx) => {
  const rec = ctx.recorder();
  const a = ctx.tensor([4, 6]), b = ctx.tensor([5, 8]), w = ctx.tensor([8, 6]), odd = ctx.tensor([6, 7]);
  assert.throws(() => matmul(rec, a, b), /a \[4,6\] has K=6, b \[5,8\] has K=5/);
  assert.throws(() => matmul(rec, a, w, { transB: true, bias: b }), /bias.*\[5,8\]/);
  assert.throws(() => matmul(rec, a, odd, { kernel: "tiled" }), /needs K, N to be multiples of 4.*\[4,6\].*\[6,7\]/);
  assert.throws(() => matmul(rec, ctx.tensor([2, 4, 6]), ctx.tensor([3, 6, 8])), /\[2\] and \[3\] do not broadcast/);
  assert.throws(() => matmul(rec, ctx.tensor([6]), w), /rank ≥ 2/);
  assert.throws(() => matmul(rec, a, w, { transB: true, act: "relu" as Activation }), /unknown activation "relu"/);
});
