import { assertClose, gpuTest } from "./_gpu.ts";
import { axpy } from "../src/ops/axpy.ts";
import { randn } from "../src/ref/random.ts";

for (const shape of [[7], [3, 5, 7], [2, 320, 8, 8], [1001]]) {
  gpuTest(`axpy y += 0.75·x ${JSON.stringify(shape)}`, async (ctx) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const x = randn(n, 1), y = randn(n, 2);
    const tx = ctx.upload(x, shape), ty = ctx.upload(y, shape);
    const rec = ctx.recorder();
    axpy(rec, ty, tx, 0.75);
    axpy(rec, ty, tx, 0.25);
    await rec.submit();
    assertClose(await ctx.readF32(ty), y.map((v, i) => v + 0.75 * x[i] + 0.25 * x[i]), 1e-6, "axpy");
    ctx.release(tx, ty);
  });
}
