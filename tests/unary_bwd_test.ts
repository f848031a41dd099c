import { assertClose, gpuTest } from "./_gpu.ts";
import { fdGrad } from "./_fd.ts";
import { unaryBackward, type UnaryOp } from "../src/ops/unary.ts";
import { unaryBackwardRef, unaryRef } from "../src/ref/unary.ts";
import { randn } from "../src/ref/random.ts";
import { numel } from "../src/gpu/tensor.ts";
import assert from "assert";

const SHAPES = [[7], [3, 5, 7], [2, 33, 17, 5], [70001]];
const OPTS: Record<UnaryOp, { alpha?: number; lo?: number; hi?: number }> = {
  scale: { alpha: 1 / 0.18215 },
  silu: {},
  gelu: {},
  quickGelu: {},
  clamp: { lo: -1.25, hi: 0.75 },
  erf: {},
};
const consts = (op: UnaryOp): [number, number] => {
  const o = OPTS[op];
  return op === "clamp" ? [o.lo!, o.hi!] : [o.alpha ?? 1, 0];
};

for (const op of Object.keys(OPTS) as UnaryOp[]) {
  gpuTest(`unaryBackward ${op} on ${SHAPES.map((s) => JSON.stringify(s)).join(" ")}`, async (ctx) => {
    for (const [k, shape] of SHAPES.entries()) {
      const n = numel(shape);
      const x = randn(n, 10 + k, 3), dy = randn(n, 20 + k), prior = randn(n, 30 + k);
      const tx = ctx.upload(x, shape), tdy = ctx.upload(dy, shape);
      const acc = ctx.upload(prior, shape), over = ctx.upload(prior, shape);
      const rec = ctx.recorder();
      const got = unaryBackward(rec, op, { dy: tdy, x: tx }, { dx: acc, ...OPTS[op] });
      unaryBackward(rec, op, { dy: tdy, x: tx }, { dx: over, accumulate: false, ...OPTS[op] });
      await rec.submit();
      assert.equal(got.dx, acc);
      const want = unaryBackwardRef(op, x, dy, ...consts(op));
      const what = `${op} ${JSON.stringify(shape)}`;
      assertClose(await ctx.readF32(acc), want.map((v, i) => v + prior[i]), 1e-6, `${what} accumulated`);
      assertClose(await ctx.readF32(over), want, 1e-6, `${what} overwritten`);
      ctx.release(tx, tdy, acc, over);
    }
  });

  gpuTest(`unaryBackward ${op} matches finite differences of the f64 forward`, async (ctx) => {
    const shape = [2, 3, 5];
    const [a, b] = consts(op);
    // keep x off clamp's kinks, where a central difference straddles the corner
    const x = randn(30, 40, 2).map((
      v,
    ) => (op === "clamp" && Math.min(Math.abs(v - a), Math.abs(v - b)) < 0.01 ? 0 : v));
    const w = randn(30, 41);
    const tx = ctx.upload(x, shape), tw = ctx.upload(w, shape), dx = ctx.tensor(shape);
    const rec = ctx.recorder();
    unaryBackward(rec, op, { dy: tw, x: tx }, { dx, accumulate: false, ...OPTS[op] });
    await rec.submit();
    const fd = fdGrad((v) => unaryRef(op, v, a, op === "clamp" ? b : 0), x, w);
    assertClose(await ctx.readF32(dx), fd, 1e-3, `${op} dx vs finite differences`);
    ctx.release(tx, tw, dx);
  });
}

async function slopes(ctx: Parameters<Parameters<typeof gpuTest>[1]>[0], op: UnaryOp, xs: Float32Array) {
  const tx = ctx.upload(xs, [xs.length]), ones = ctx.upload(new Float32Array(xs.length).fill(1), [xs.length]);
  const dx = ctx.tensor([xs.length]);
  const rec = ctx.recorder();
  unaryBackward(rec, op, { dy: ones, x: tx }, { dx, accumulate: false, ...OPTS[op] });
  await rec.submit();
  const got = await ctx.readF32(dx);
  ctx.release(tx, ones, dx);
  return got;
}

gpuTest("gelu', silu', quickGelu' and erf': |error| < 1e-6 on [-40, 40] and finite at ±3e38", async (ctx) => {
  const n = 40001;
  const xs = new Float32Array(n + 8);
  for (let i = 0; i < n; i++) xs[i] = -40 + 80 * i / (n - 1);
  xs.set([-3e38, -1e30, -1e6, -90, 90, 1e6, 1e30, 3e38], n);
  for (const op of ["gelu", "silu", "quickGelu", "erf"] as const) {
    const got = await slopes(ctx, op, xs);
    const want = unaryBackwardRef(op, xs, new Float32Array(xs.length).fill(1));
    for (const [i, x] of xs.entries()) {
      assert.ok(Math.abs(got[i] - want[i]) < 1e-6, `${op}'(${x}) = ${got[i]}, want ${want[i]}`);
    }
  }
});

gpuTest("clamp passes the gradient at its bounds and blocks it outside", async (ctx) => {
  const xs = Float32Array.from([-1.25, -1.2500001, 0.75, 0.7500001, 0, -Infinity, Infinity]);
  assert.deepEqual([...await slopes(ctx, "clamp", xs)], [1, 0, 1, 0, 1, 0, 0]);
});

gpuTest("unaryBackward errors name the op and the shapes", (ctx) => {
  const rec = ctx.recorder();
  const x = ctx.tensor([4, 6], "f32", "x"),
    dy = ctx.tensor([4, 6], "f32", "dy"),
    odd = ctx.tensor([4, 5], "f32", "odd");
  assert.throws(() => unaryBackward(rec, "silu", { dy }, { dx: odd }), /silu backward: needs the forward input x/);
  assert.throws(
    () => unaryBackward(rec, "gelu", { dy, x: odd }),
    /gelu backward: x "odd" against dy "dy": shape \[4,5\] does not match expected \[4,6\]/,
  );
  assert.throws(
    () => unaryBackward(rec, "gelu", { dy, x }, { dx: odd }),
    /gelu backward dx "odd": shape \[4,5\] does not match expected \[4,6\]/,
  );
  assert.throws(() => unaryBackward(rec, "silu", { dy, x }, { dx: x }), /dx "x" shares its buffer with input "x"/);
  assert.throws(() => unaryBackward(rec, "clamp", { dy, x }, { lo: 2, hi: 1 }), /lower bound 2 is above upper bound 1/);
  assert.deepEqual(unaryBackward(rec, "scale", { dy }), {}); // scale needs no x; no dx, nothing to do
  ctx.release(x, dy, odd);
});
