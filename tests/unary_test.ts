import { assertClose, gpuTest } from "./_gpu.ts";
import { scale, unary, type UnaryOp } from "../src/ops/unary.ts";
import { erf64, unaryRef } from "../src/ref/unary.ts";
import { randn } from "../src/ref/random.ts";
import { numel } from "../src/gpu/tensor.ts";
import assert from "assert";

const SHAPES = [[7], [3, 5, 7], [2, 33, 17, 5], [70001]];
const OPTS: Record<UnaryOp, { alpha?: number; beta?: number; lo?: number; hi?: number }> = {
  scale: { alpha: 1 / 0.18215, beta: -0.5 },
  silu: {},
  gelu: {},
  quickGelu: {},
  clamp: { lo: -1.25, hi: 0.75 },
  erf: {},
};

for (const op of Object.keys(OPTS) as UnaryOp[]) {
  gpuTest(`unary ${op} on ${SHAPES.map((s) => JSON.stringify(s)).join(" ")}`, async (ctx) => {
    for (const [k, shape] of SHAPES.entries()) {
      const x = randn(numel(shape), 10 + k, 3);
      const tx = ctx.upload(x, shape);
      const rec = ctx.recorder();
      const out = unary(rec, op, tx, OPTS[op]);
      await rec.submit();
      assert.deepEqual(out.shape, shape);
      const o = OPTS[op];
      const want = op === "clamp" ? unaryRef(op, x, o.lo, o.hi) : unaryRef(op, x, o.alpha, o.beta);
      assertClose(await ctx.readF32(out), want, 1e-6, `${op} ${JSON.stringify(shape)}`);
      ctx.release(tx, out);
    }
  });
}

/** Max |got − want| and where. */
function maxAbsErr(xs: ArrayLike<number>, got: ArrayLike<number>, want: (x: number) => number): [number, number] {
  let worst = 0, at = NaN;
  for (let i = 0; i < xs.length; i++) {
    const e = Math.abs(got[i] - want(xs[i]));
    if (!(e <= worst)) [worst, at] = [e, xs[i]];
  }
  return [worst, at];
}

async function run(ctx: Parameters<Parameters<typeof gpuTest>[1]>[0], op: UnaryOp, xs: Float32Array) {
  const tx = ctx.upload(xs, [xs.length]);
  const rec = ctx.recorder();
  const out = unary(rec, op, tx);
  await rec.submit();
  const got = await ctx.readF32(out);
  ctx.release(tx, out);
  return got;
}

const EXTREMES = [
  -3e38,
  -1e30,
  -1e6,
  -100,
  -27,
  -20,
  -10.5,
  -9.5,
  -6,
  -4,
  -2.5,
  -1,
  -0.5000001,
  -0.5,
  -0.4999999,
  -1e-3,
  -1e-30,
  0,
  1e-30,
  1e-7,
  0.3,
  0.4999999,
  0.5,
  0.5000001,
  1,
  2,
  2.5,
  3.7,
  5,
  9,
  9.5,
  10,
  27,
  1e4,
  1e30,
  3e38,
];

gpuTest("erf: |error| < 1e-6 on a dense sweep of [-12, 12] and at extremes", async (ctx) => {
  const n = 240001;
  const xs = new Float32Array(n + EXTREMES.length);
  for (let i = 0; i < n; i++) xs[i] = -12 + 24 * i / (n - 1);
  xs.set(EXTREMES, n);
  const got = await run(ctx, "erf", xs);
  const [err, at] = maxAbsErr(xs, got, erf64);
  assert.ok(err < 1e-6, `erf: max |error| ${err.toExponential(2)} at x = ${at}`);
  // small arguments keep their relative accuracy (the series branch), so erf(x)/x → 2/√π
  for (const [i, x] of xs.entries()) {
    if (x !== 0 && Math.abs(x) < 0.5) {
      const rel = Math.abs(got[i] - erf64(x)) / Math.abs(erf64(x));
      assert.ok(rel < 1e-6, `erf(${x}) relative error ${rel}`);
    }
  }
});

gpuTest("gelu: accurate far into both tails (|error| ≤ 1e-6·max(1, |x|))", async (ctx) => {
  const n = 80001;
  const xs = new Float32Array(n + EXTREMES.length);
  for (let i = 0; i < n; i++) xs[i] = -40 + 80 * i / (n - 1);
  xs.set(EXTREMES, n);
  const got = await run(ctx, "gelu", xs);
  const want = unaryRef("gelu", xs);
  for (const [i, x] of xs.entries()) {
    const tol = 1e-6 * Math.max(1, Math.abs(x));
    assert.ok(Math.abs(got[i] - want[i]) <= tol, `gelu(${x}) = ${got[i]}, want ${want[i]}`);
  }
  // the negative tail keeps its relative accuracy where it is not denormal: gelu(-10) ≈ -7.62e-23
  for (const [i, x] of xs.entries()) {
    if (x < -0.5 && x > -13) {
      const rel = Math.abs(got[i] - want[i]) / Math.abs(want[i]);
      assert.ok(rel < 1e-4, `gelu(${x}) relative error ${rel.toExponential(2)}`);
    }
  }
});

gpuTest("silu and quickGelu saturate without NaN at huge |x|", async (ctx) => {
  const xs = Float32Array.from([-3e38, -1e6, -200, -90, 90, 200, 1e6, 3e38]);
  for (const op of ["silu", "quickGelu"] as const) {
    const got = await run(ctx, op, xs);
    const want = unaryRef(op, xs);
    for (const [i, x] of xs.entries()) {
      assert.ok(Math.abs(got[i] - want[i]) <= 1e-6 * Math.abs(x), `${op}(${x}) = ${got[i]}, want ${want[i]}`);
    }
  }
});

gpuTest("unary in place (out = x), twice in one recording", async (ctx) => {
  const shape = [5, 37];
  const x = randn(numel(shape), 3);
  const t = ctx.upload(x, shape);
  const rec = ctx.recorder();
  scale(rec, t, { alpha: 2, beta: 1, out: t });
  unary(rec, "clamp", t, { hi: 2, out: t }); // lo defaults to -Infinity
  await rec.submit();
  const want = unaryRef("clamp", unaryRef("scale", x, 2, 1), -Infinity, 2);
  assertClose(await ctx.readF32(t), want, 1e-7, "scale then clamp in place");
  ctx.release(t);
});

gpuTest("unary writes nothing past the last element of a view (the partial vec4)", async (ctx) => {
  const big = ctx.upload(new Float32Array(16).fill(42), [16], "f32", "big");
  const x = ctx.upload(randn(7, 4), [7]);
  const head = { ...big, shape: [7], label: "big[:7]" };
  const rec = ctx.recorder();
  unary(rec, "silu", x, { out: head });
  unary(rec, "scale", head, { alpha: 2, out: head });
  await rec.submit();
  const got = await ctx.readF32(big);
  assert.deepEqual([...got.subarray(7)], new Array(9).fill(42));
  assert.ok(got.subarray(0, 7).every((v) => v !== 42));
  ctx.release(big, x);
});

gpuTest("unary errors name the op and the shapes", (ctx) => {
  const rec = ctx.recorder();
  const x = ctx.tensor([4, 96]), ids = ctx.tensor([3], "i32", "ids"), wrong = ctx.tensor([4, 95], "f32", "wrong");
  assert.throws(() => unary(rec, "silu", ids), /silu: "ids" \[3\] is i32, expected f32/);
  assert.throws(
    () => unary(rec, "gelu", x, { out: wrong }),
    /gelu output "wrong": shape \[4,95\] does not match expected \[4,96\]/,
  );
  const view = { ...x, shape: [2, 96], offset: 2 * 96 * 4, label: "x[2:]" };
  const head = { ...x, shape: [2, 96], label: "x[:2]" };
  assert.throws(
    () => unary(rec, "silu", head, { out: view }),
    /silu: output "x\[2:\]" shares its buffer with input "x\[:2\]"/,
  );
  assert.throws(() => unary(rec, "clamp", x, { lo: 1, hi: 0 }), /clamp: lower bound 1 is above upper bound 0/);
  // deno-lint-ignore no-explicit-any
  assert.throws(() => unary(rec, "tanh" as any, x), /unary: unknown op "tanh"/);
  ctx.release(x, ids, wrong);
});
