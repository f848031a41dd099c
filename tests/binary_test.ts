import { assertClose, gpuTest } from "./_gpu.ts";
import { binary, type BinaryOp } from "../src/ops/binary.ts";
import { binaryRef } from "../src/ref/binary.ts";
import { randn } from "../src/ref/random.ts";
import { numel } from "../src/gpu/tensor.ts";
import assert from "assert";

const cases: [BinaryOp, number[], number[]][] = [
  ["add", [3, 5, 7], [3, 5, 7]],
  ["add", [2, 5, 7, 3], [5, 1, 1]],
  ["mul", [2, 7, 9, 11], [2, 7, 1, 1]],
  ["sub", [1], [13, 17]],
  ["div", [4, 1, 6], [1, 5, 1]],
  ["axpby", [70001], [70001]],
];

for (const [op, as, bs] of cases) {
  gpuTest(`binary ${op} ${JSON.stringify(as)} ∘ ${JSON.stringify(bs)}`, async (ctx) => {
    const a = randn(numel(as), 1), b = randn(numel(bs), 2).map((x) => (op === "div" ? x + 3 : x));
    const rec = ctx.recorder();
    const ta = ctx.upload(a, as), tb = ctx.upload(b, bs);
    const out = binary(rec, op, ta, tb, { alpha: 0.5, beta: -2 });
    await rec.submit();
    const [want, shape] = binaryRef(op, a, as, b, bs, 0.5, -2);
    assert.deepEqual(out.shape, shape);
    assertClose(await ctx.readF32(out), want, 1e-6, op);
    ctx.release(ta, tb, out);
  });
}

gpuTest("binary rejects shapes that do not broadcast, naming both", (ctx) => {
  const rec = ctx.recorder();
  const ta = ctx.tensor([2, 3]), tb = ctx.tensor([4]);
  assert.throws(() => binary(rec, "add", ta, tb), /\[2,3\] and \[4\] do not broadcast/);
  ctx.release(ta, tb);
});
