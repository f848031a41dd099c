import { assertClose, gpuTest } from "./_gpu.ts";
import { geglu } from "../src/ops/geglu.ts";
import { gegluRef } from "../src/ref/geglu.ts";
import { randn } from "../src/ref/random.ts";
import { numel } from "../src/gpu/tensor.ts";
import assert from "assert";

// [..., 2F] inputs: odd F, a single row, rank 1, rank 4, F % 4 == 0 (the vec4 path)
for (const shape of [[2, 7, 2 * 13], [1, 2], [2 * 641], [2, 3, 5, 2 * 37], [3, 5, 2 * 12], [2, 2 * 6]]) {
  gpuTest(`geglu ${JSON.stringify(shape)}`, async (ctx) => {
    const x = randn(numel(shape), 5, 2);
    const tx = ctx.upload(x, shape);
    const rec = ctx.recorder();
    const out = geglu(rec, tx);
    await rec.submit();
    const f = shape.at(-1)! / 2;
    assert.deepEqual(out.shape, [...shape.slice(0, -1), f]);
    assertClose(await ctx.readF32(out), gegluRef(x, numel(shape) / (2 * f), f), 1e-6, "geglu");
    ctx.release(tx, out);
  });
}

gpuTest("geglu errors name the shapes", (ctx) => {
  const rec = ctx.recorder();
  const odd = ctx.tensor([2, 5]), x = ctx.tensor([2, 6]), out = ctx.tensor([2, 6], "f32", "out");
  assert.throws(() => geglu(rec, odd), /geglu: input \[2,5\] needs an even last dimension/);
  assert.throws(() => geglu(rec, x, { out }), /geglu output "out": shape \[2,6\] does not match expected \[2,3\]/);
  assert.throws(() => geglu(rec, ctx.tensor([4], "i32", "ids")), /geglu: "ids" \[4\] is i32, expected f32/);
  ctx.release(odd, x, out);
});
