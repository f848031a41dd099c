/** Regression: Aᵀ·B with K not a multiple of 4 (the U-Net's time-embedding weight gradients have K = batch = 2). */
import { assertClose, gpuTest } from "./_gpu.ts";
import { matmul } from "../src/ops/matmul.ts";
import { matmulRef } from "../src/ref/matmul.ts";
import { randn } from "../src/ref/random.ts";

for (const [K, M, N] of [[1, 64, 32], [2, 128, 32], [5, 64, 32], [6, 36, 44]]) {
  gpuTest(`matmul Aᵀ·B with K=${K}, M=${M}, N=${N}`, async (ctx) => {
    const a = randn(K * M, 1), b = randn(K * N, 2);
    const ta = ctx.upload(a, [K, M]), tb = ctx.upload(b, [K, N]);
    const rec = ctx.recorder();
    const o = matmul(rec, ta, tb, { transA: true });
    await rec.submit();
    assertClose(await ctx.readF32(o), matmulRef(a, [K, M], b, [K, N], { transA: true }).out, 1e-5, "Aᵀ·B");
    ctx.release(ta, tb, o);
  });
}
