import assert from "assert";
import { assertClose, gpuTest } from "./_gpu.ts";
import { fill } from "../src/ops/fill.ts";
import { fillNormalRef, fillUniformRef } from "../src/ref/fill.ts";

for (const n of [1, 1000, 70_001]) {
  gpuTest(`fill: constant, uniform and normal streams match the CPU reference (n=${n})`, async (ctx) => {
    const t = ctx.tensor([n]);
    let rec = ctx.recorder();
    fill(rec, t, { value: -1.5 });
    await rec.submit();
    assert.ok((await ctx.readF32(t)).every((v) => v === -1.5));
    rec = ctx.recorder();
    fill(rec, t, { uniform: [-2, 3], seed: 7 });
    await rec.submit();
    const u = await ctx.readF32(t);
    assertClose(u, fillUniformRef(n, 7, -2, 3), 1e-6, "uniform");
    rec = ctx.recorder();
    fill(rec, t, { normal: [0.5, 2], seed: 1234 });
    await rec.submit();
    const g = await ctx.readF32(t);
    assertClose(g, fillNormalRef(n, 1234, 0.5, 2), 1e-5, "normal");
    if (n > 10_000) {
      const mean = g.reduce((a, b) => a + b, 0) / n;
      const sd = Math.sqrt(g.reduce((a, b) => a + (b - mean) ** 2, 0) / n);
      assert.ok(Math.abs(mean - 0.5) < 0.05 && Math.abs(sd - 2) < 0.05, `mean ${mean} sd ${sd}`);
    }
    ctx.release(t);
  });
}
