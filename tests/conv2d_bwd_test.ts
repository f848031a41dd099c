import { assertClose, gpuTest } from "./_gpu.ts";
import { fdGrad } from "./_fd.ts";
import { conv2dBackward } from "../src/ops/conv2d_bwd.ts";
import { planConv2d } from "../src/ops/conv2d.ts";
import { conv2dDbiasRef, conv2dDwRef, conv2dDxRef, type Conv2dGeometry, conv2dRef64 } from "../src/ref/conv2d_bwd.ts";
import { randn } from "../src/ref/random.ts";
import { numel } from "../src/gpu/tensor.ts";
import assert from "assert";

interface Case extends Conv2dGeometry {
  x: number[];
  w: number[];
  /** dw's split-K scratch budget in units of dw's size (forces rounds). */
  partials?: number;
}

const cases: Case[] = [
  { x: [1, 5, 9, 13], w: [7, 5, 3, 3], padding: 1 }, // odd channels, H ≠ W
  { x: [2, 5, 9, 13], w: [7, 5, 3, 3], stride: 2, padding: 1 }, // odd sizes at stride 2
  { x: [2, 8, 9, 13], w: [6, 8, 3, 3], stride: 2, padding: [0, 1, 0, 1] }, // the VAE downsampler
  { x: [2, 3, 11, 7], w: [20, 3, 3, 3] }, // no padding, Cout over one 16-channel tile
  { x: [2, 5, 9, 13], w: [7, 5, 1, 1] }, // 1×1
  { x: [1, 4, 5, 6], w: [3, 4, 1, 1], stride: 2 }, // 1×1 stride 2: 3 of 4 input pixels get no gradient
  { x: [1, 12, 20, 19], w: [9, 12, 3, 3], padding: [2, 0, 1, 3] }, // uneven padding
  { x: [1, 18, 10, 8], w: [17, 18, 3, 3], stride: 2, padding: 1 }, // Cin and Cout over one tile
  { x: [2, 3, 2, 1], w: [4, 3, 3, 3], stride: 2, padding: 1 }, // W = 1: one parity class has no pixels
  // K = 2·33·35 = 2310: three splits of dw, summed in one reduce, then in rounds of 2 (reduce) + 1 (direct)
  { x: [2, 5, 33, 35], w: [7, 5, 3, 3], padding: 1 },
  { x: [2, 5, 33, 35], w: [7, 5, 3, 3], padding: 1, partials: 2 },
];

for (const c of cases) {
  const name = `conv2dBackward x${JSON.stringify(c.x)} w${JSON.stringify(c.w)} stride ${c.stride ?? 1} pad ` +
    `${JSON.stringify(c.padding ?? 0)}${c.partials ? ` partials ${c.partials}` : ""}`;
  gpuTest(`${name} (accumulate and overwrite)`, async (ctx) => {
    const plan = planConv2d(c.x, c.w, c.stride, c.padding);
    const x = randn(numel(c.x), 1), w = randn(numel(c.w), 2, 0.3), dout = randn(numel(plan.shape), 3);
    const tx = ctx.upload(x, c.x), tw = ctx.upload(w, c.w), td = ctx.upload(dout, plan.shape);
    const prior = { dx: randn(numel(c.x), 4), dw: randn(numel(c.w), 5), dbias: randn(plan.Cout, 6) };
    const grads = (seed: number) => ({
      dx: ctx.upload(seed ? prior.dx : randn(numel(c.x), 7), c.x),
      dw: ctx.upload(seed ? prior.dw : randn(numel(c.w), 8), c.w),
      dbias: ctx.upload(seed ? prior.dbias : randn(plan.Cout, 9), [plan.Cout]),
    });
    const acc = grads(1), over = grads(0);
    const geo = { stride: c.stride, padding: c.padding };
    const partialBytes = c.partials ? c.partials * 4 * numel(c.w) : undefined;
    const rec = ctx.recorder();
    const got = conv2dBackward(rec, { x: tx, w: tw, dout: td }, { ...geo, ...acc, partialBytes });
    conv2dBackward(rec, { x: tx, w: tw, dout: td }, { ...geo, ...over, partialBytes, accumulate: false });
    await rec.submit();
    assert.deepEqual(got, acc);
    const want = {
      dx: conv2dDxRef(dout, w, c.x, c.w, geo),
      dw: conv2dDwRef(dout, x, c.x, c.w, geo),
      dbias: conv2dDbiasRef(dout, plan.shape),
    };
    const errs: string[] = [];
    for (const k of ["dx", "dw", "dbias"] as const) {
      const e1 = assertClose(await ctx.readF32(acc[k]), want[k].map((v, i) => v + prior[k][i]), 1e-5, `${k} acc`);
      const e2 = assertClose(await ctx.readF32(over[k]), want[k], 1e-5, `${k} overwritten`);
      errs.push(`${k} ${e1.toExponential(1)}/${e2.toExponential(1)}`);
    }
    console.log(`  rel L2 (accumulated/overwritten): ${errs.join(", ")}`);
    ctx.release(tx, tw, td, ...Object.values(acc), ...Object.values(over));
  });
}

gpuTest("conv2dBackward matches finite differences of the f64 forward", async (ctx) => {
  const tiny: Case[] = [
    { x: [1, 2, 5, 4], w: [3, 2, 3, 3], stride: 2, padding: [0, 1, 0, 1] },
    { x: [2, 3, 4, 5], w: [2, 3, 3, 3], padding: 1 },
    { x: [1, 3, 5, 5], w: [2, 3, 1, 1], stride: 2 },
  ];
  for (const c of tiny) {
    const geo = { stride: c.stride, padding: c.padding };
    const plan = planConv2d(c.x, c.w, c.stride, c.padding);
    const x = randn(numel(c.x), 11), w = randn(numel(c.w), 12), bias = randn(plan.Cout, 13);
    const r = randn(numel(plan.shape), 14); // L = Σ out · r, so dL/dout = r
    const tx = ctx.upload(x, c.x), tw = ctx.upload(w, c.w), tr = ctx.upload(r, plan.shape);
    const dx = ctx.tensor(c.x), dw = ctx.tensor(c.w), dbias = ctx.tensor([plan.Cout]);
    const rec = ctx.recorder();
    conv2dBackward(rec, { x: tx, w: tw, dout: tr }, { ...geo, dx, dw, dbias, accumulate: false });
    await rec.submit();
    const what = `x${JSON.stringify(c.x)} w${JSON.stringify(c.w)}`;
    const fdx = fdGrad((v) => conv2dRef64(v, c.x, w, c.w, { ...geo, bias }), x, r);
    const fdw = fdGrad((v) => conv2dRef64(x, c.x, v, c.w, { ...geo, bias }), w, r);
    const fdb = fdGrad((v) => conv2dRef64(x, c.x, w, c.w, { ...geo, bias: v }), bias, r);
    const e = [
      assertClose(await ctx.readF32(dx), fdx, 1e-3, `dx ${what} vs finite differences`),
      assertClose(await ctx.readF32(dw), fdw, 1e-3, `dw ${what} vs finite differences`),
      assertClose(await ctx.readF32(dbias), fdb, 1e-3, `dbias ${what} vs finite differences`),
    ];
    console.log(
      `  ${what}: rel L2 dx ${e[0].toExponential(1)}, dw ${e[1].toExponential(1)}, dbias ${e[2].toExponential(1)}`,
    );
    ctx.release(tx, tw, tr, dx, dw, dbias);
  }
});

// K = 300·300 = 90,000 output pixels, over lavapipe's 65,535 iterations per invocation had one invocation summed
// them: dw takes 88 splits in two rounds (64 + 24), dbias 6 chunks of 16,384, dx 704 workgroups of one class.
gpuTest("conv2dBackward long reduction [1,1,300,300] 3×3", async (ctx) => {
  const xs = [1, 1, 300, 300], ws = [1, 1, 3, 3];
  const x = randn(numel(xs), 21), w = randn(9, 22), dout = randn(numel(xs), 23);
  const tx = ctx.upload(x, xs), tw = ctx.upload(w, ws), td = ctx.upload(dout, xs);
  const dx = ctx.tensor(xs), dw = ctx.tensor(ws), dbias = ctx.tensor([1]);
  const rec = ctx.recorder();
  conv2dBackward(rec, { x: tx, w: tw, dout: td }, { padding: 1, dx, dw, dbias, accumulate: false });
  await rec.submit();
  const e = [
    assertClose(await ctx.readF32(dx), conv2dDxRef(dout, w, xs, ws, { padding: 1 }), 1e-5, "dx"),
    assertClose(await ctx.readF32(dw), conv2dDwRef(dout, x, xs, ws, { padding: 1 }), 1e-5, "dw"),
    assertClose(await ctx.readF32(dbias), conv2dDbiasRef(dout, xs), 1e-5, "dbias"),
  ];
  console.log(`  rel L2 dx ${e[0].toExponential(1)}, dw ${e[1].toExponential(1)}, dbias ${e[2].toExponential(1)}`);
  ctx.release(tx, tw, td, dx, dw, dbias);
});

gpuTest("conv2dBackward SD-sized weight gradient [2,320,32,32] → 320 3×3", async (ctx) => {
  const xs = [2, 320, 32, 32], ws = [320, 320, 3, 3];
  const x = randn(numel(xs), 31), dout = randn(numel(xs), 32);
  const tx = ctx.upload(x, xs), tw = ctx.tensor(ws), td = ctx.upload(dout, xs);
  const dw = ctx.tensor(ws), dbias = ctx.tensor([320]);
  const rec = ctx.recorder();
  conv2dBackward(rec, { x: tx, w: tw, dout: td }, { padding: 1, dw, dbias, accumulate: false });
  await rec.submit();
  const e1 = assertClose(await ctx.readF32(dw), conv2dDwRef(dout, x, xs, ws, { padding: 1 }), 1e-5, "dw");
  const e2 = assertClose(await ctx.readF32(dbias), conv2dDbiasRef(dout, xs), 1e-5, "dbias");
  console.log(`  rel L2 dw ${e1.toExponential(1)}, dbias ${e2.toExponential(1)}`);
  ctx.release(tx, tw, td, dw, dbias);
});

gpuTest("conv2dBackward computes only the gradients given", async (ctx) => {
  const x = ctx.tensor([1, 5, 6, 7]), w = ctx.tensor([3, 5, 3, 3]), dout = ctx.tensor([1, 3, 6, 7]);
  const dw = ctx.tensor([3, 5, 3, 3]);
  const rec = ctx.recorder();
  assert.deepEqual(conv2dBackward(rec, { x, w, dout }, { padding: 1 }), {});
  assert.equal(rec.dispatches, 0);
  const before = ctx.memory.current;
  const got = conv2dBackward(rec, { x, w, dout }, { padding: 1, dw });
  assert.deepEqual(got, { dw });
  assert.equal(rec.dispatches, 3, "pack dout, pack x, dw");
  await rec.submit();
  await ctx.sync();
  assert.equal(ctx.memory.current, before, "packing scratch is freed after submit");
  ctx.release(x, w, dout, dw);
});

gpuTest("conv2dBackward error messages name the shapes", (ctx) => {
  const rec = ctx.recorder();
  const x = ctx.tensor([1, 5, 8, 8], "f32", "x"), w = ctx.tensor([7, 5, 3, 3], "f32", "w");
  const dout = ctx.tensor([1, 7, 8, 8], "f32", "dout"), bad = ctx.tensor([1, 7, 6, 6], "f32", "bad");
  assert.throws(
    () => conv2dBackward(rec, { x, w, dout: bad }, { padding: 1 }),
    /conv2d backward: dout "bad" of x \[1,5,8,8\] and w \[7,5,3,3\]: shape \[1,7,6,6\] does not match expected \[1,7,8,8\]/,
  );
  assert.throws(() => conv2dBackward(rec, { x, w, dout }, { padding: 1, dx: dout }), /dx "dout".*\[1,5,8,8\]/);
  assert.throws(() => conv2dBackward(rec, { x, w, dout }, { padding: 1, dw: w }), /dw "w" shares its buffer/);
  assert.throws(() => conv2dBackward(rec, { x, w, dout }, { padding: 1, dbias: ctx.tensor([5]) }), /dbias.*\[7\]/);
  assert.throws(() => conv2dBackward(rec, { x, w: ctx.tensor([7, 4, 3, 3]), dout }), /w \[7,4,3,3\] expects 4/);
  assert.throws(() => conv2dBackward(rec, { x, w, dout }, { stride: 3 as 1 }), /stride 3/);
  assert.throws(() => conv2dBackward(rec, { x: ctx.tensor([1, 5, 8, 8], "i32"), w, dout }), /is i32, expected f32/);
});
