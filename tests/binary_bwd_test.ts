import { assertClose, gpuTest } from "./_gpu.ts";
import { fdGrad } from "./_fd.ts";
import { binaryBackward, type BinaryOp } from "../src/ops/binary.ts";
import { binaryBackwardRef, binaryRef64 } from "../src/ref/binary.ts";
import { randn } from "../src/ref/random.ts";
import { numel } from "../src/gpu/tensor.ts";
import assert from "assert";

const AB = { alpha: 0.5, beta: -2 };
const sum = (x: ArrayLike<number>, y: ArrayLike<number>) => Float64Array.from(x, (v, i) => v + y[i]);

const cases: [BinaryOp, number[], number[]][] = [
  ["add", [2, 5, 9, 7], [5, 1, 1]], // conv bias
  ["add", [2, 6, 5, 7], [2, 6, 1, 1]], // the U-Net's time embedding
  ["mul", [3, 5, 7], [3, 5, 7]], // no broadcasting: elementwise
  ["sub", [1], [13, 17]], // a scalar against a matrix
  ["div", [4, 1, 6], [1, 5, 1]], // both operands broadcast
  ["mul", [2, 77, 37], [37]], // a last-dim bias-like scale: T's dims innermost
  ["axpby", [70001], [70001]],
  ["add", [2, 3, 70, 90], [3, 1, 1]], // R = 12,600 per channel
  ["mul", [150001], [1]], // R = 150,001 into one element: two passes
];

for (const [op, as, bs] of cases) {
  gpuTest(
    `binaryBackward ${op} ${JSON.stringify(as)} ∘ ${JSON.stringify(bs)} (accumulate and overwrite)`,
    async (ctx) => {
      const a = randn(numel(as), 1), b = randn(numel(bs), 2).map((x) => (op === "div" ? x + 3 : x));
      const [, shape] = binaryRef64(op, a, as, b, bs);
      const dy = randn(numel(shape), 3);
      const pa = randn(a.length, 4), pb = randn(b.length, 5);
      const ta = ctx.upload(a, as), tb = ctx.upload(b, bs), tdy = ctx.upload(dy, shape);
      const da1 = ctx.upload(pa, as), db1 = ctx.upload(pb, bs);
      const da0 = ctx.upload(randn(a.length, 6), as), db0 = ctx.upload(randn(b.length, 7), bs); // overwritten
      const rec = ctx.recorder();
      const got = binaryBackward(rec, op, { dy: tdy, a: ta, b: tb }, { da: da1, db: db1, ...AB });
      binaryBackward(rec, op, { dy: tdy, a: ta, b: tb }, { da: da0, db: db0, accumulate: false, ...AB });
      await rec.submit();
      assert.equal(got.da, da1);
      assert.equal(got.db, db1);
      const want = binaryBackwardRef(op, a, as, b, bs, dy, AB.alpha, AB.beta);
      // a sum of 10⁵ random terms into one number loses ~1e-5 to f32 rounding however it is ordered
      const tol = numel(shape) / Math.min(a.length, b.length) > 1000 ? 1e-4 : 1e-6;
      assertClose(await ctx.readF32(da1), sum(pa, want.da), tol, "da (accumulated)");
      assertClose(await ctx.readF32(db1), sum(pb, want.db), tol, "db (accumulated)");
      assertClose(await ctx.readF32(da0), want.da, tol, "da (overwritten)");
      assertClose(await ctx.readF32(db0), want.db, tol, "db (overwritten)");
      ctx.release(ta, tb, tdy, da1, db1, da0, db0);
    },
  );
}

for (const op of ["add", "sub", "mul", "div", "axpby"] as BinaryOp[]) {
  gpuTest(`binaryBackward ${op} matches finite differences of the f64 forward`, async (ctx) => {
    const [as, bs] = [[2, 3, 1, 4], [3, 5, 1]];
    const a = randn(numel(as), 11), b = randn(numel(bs), 12).map((x) => (op === "div" ? x + 3 : x));
    const [, shape] = binaryRef64(op, a, as, b, bs);
    const w = randn(numel(shape), 13);
    const ta = ctx.upload(a, as), tb = ctx.upload(b, bs), tw = ctx.upload(w, shape);
    const da = ctx.tensor(as), db = ctx.tensor(bs);
    const rec = ctx.recorder();
    binaryBackward(rec, op, { dy: tw, a: ta, b: tb }, { da, db, accumulate: false, ...AB });
    await rec.submit();
    const fa = fdGrad((x) => binaryRef64(op, x, as, b, bs, AB.alpha, AB.beta)[0], a, w);
    const fb = fdGrad((y) => binaryRef64(op, a, as, y, bs, AB.alpha, AB.beta)[0], b, w);
    assertClose(await ctx.readF32(da), fa, 1e-3, "da vs finite differences");
    assertClose(await ctx.readF32(db), fb, 1e-3, "db vs finite differences");
    ctx.release(ta, tb, tw, da, db);
  });
}

gpuTest("binaryBackward writes only the gradients it is given", async (ctx) => {
  const a = ctx.upload(randn(12, 1), [3, 4]), b = ctx.upload(randn(4, 2), [4]), dy = ctx.upload(randn(12, 3), [3, 4]);
  const db = ctx.upload([1, 2, 3, 4], [4]);
  const rec = ctx.recorder();
  const got = binaryBackward(rec, "mul", { dy, a, b }, { db });
  assert.deepEqual(Object.keys(got), ["db"]);
  assert.deepEqual(Object.keys(binaryBackward(rec, "mul", { dy, a, b })), []);
  await rec.submit();
  const want = binaryBackwardRef("mul", await ctx.readF32(a), [3, 4], await ctx.readF32(b), [4], await ctx.readF32(dy));
  assertClose(await ctx.readF32(db), sum([1, 2, 3, 4], want.db), 1e-6, "db");
  ctx.release(a, b, dy, db);
});

gpuTest("binaryBackward errors name the shapes", (ctx) => {
  const rec = ctx.recorder();
  const a = ctx.tensor([2, 3, 4], "f32", "a"),
    b = ctx.tensor([3, 1], "f32", "b"),
    dy = ctx.tensor([2, 3, 4], "f32", "dy");
  const bad = ctx.tensor([2, 3, 5], "f32", "bad"), ids = ctx.tensor([3, 1], "i32", "ids");
  assert.throws(
    () => binaryBackward(rec, "add", { dy: bad, a, b }),
    /add backward: dy "bad" \(a \[2,3,4\], b \[3,1\]\): shape \[2,3,5\] does not match expected \[2,3,4\]/,
  );
  assert.throws(
    () => binaryBackward(rec, "mul", { dy, a, b }, { db: bad }),
    /mul backward db "bad": shape \[2,3,5\] does not match expected \[3,1\]/,
  );
  assert.throws(() => binaryBackward(rec, "mul", { dy, a, b }, { db: ids }), /mul backward: db "ids" \[3,1\] is i32/);
  assert.throws(
    () => binaryBackward(rec, "add", { dy, a, b }, { da: dy }),
    /add backward: da "dy" shares its buffer with input "dy"/,
  );
  const c = ctx.tensor([4], "f32", "c");
  assert.throws(
    () => binaryBackward(rec, "add", { dy, a: bad, b: c }),
    /add backward: shapes \[2,3,5\] and \[4\] do not/,
  );
  ctx.release(a, b, c, dy, bad, ids);
});
