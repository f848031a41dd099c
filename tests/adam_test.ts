import assert from "assert";
import { assertClose, gpuTest } from "./_gpu.ts";
import type { GpuContext, Tensor } from "../src/gpu/mod.ts";
import { Adam, type AdamOptions, clipGradNorm, linearWarmup } from "../src/optim/mod.ts";
import { adamStepRef } from "../src/ref/adam.ts";
import { randn, rng } from "../src/ref/random.ts";
import { Tape } from "../src/autodiff/tape.ts";
import { DiffOps } from "../src/autodiff/ops.ts";
import { binary } from "../src/ops/binary.ts";

/** Gradients over six decades, with exact zeros: the tiny ones sit in ε = 6.25e-10's regime (|g| ≈ 1e-9). */
function awkwardGrads(n: number, seed: number): Float32Array {
  const r = rng(seed);
  const g = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = r.uniform();
    g[i] = u < 0.1 ? 0 : r.normal() * (u < 0.4 ? 1e-9 : u < 0.55 ? 1e-11 : u < 0.7 ? 1e-3 : 1);
  }
  return g;
}

interface Case {
  name: string;
  opts: AdamOptions;
  /** lr of step t, for the reference. */
  lr: (t: number) => number;
}

const SHAPES = [[7], [3, 5, 7], [33, 64], [1001], [2, 6]];
const CASES: Case[] = [
  { name: "Adam", opts: { lr: 1e-2 }, lr: () => 1e-2 },
  {
    name: "Adam eps 6.25e-10, weight decay 0.05",
    opts: { lr: 3e-3, eps: 6.25e-10, weightDecay: 0.05, betas: [0.8, 0.99] },
    lr: () => 3e-3,
  },
  {
    name: "AdamW eps 6.25e-10, weight decay 0.1, linear warm-up",
    opts: { lr: linearWarmup(2e-2, 4), eps: 6.25e-10, weightDecay: 0.1, decoupled: true },
    lr: (t) => 2e-2 * Math.min(1, t / 4),
  },
];

for (const c of CASES) {
  gpuTest(`${c.name}: 6 steps match PyTorch's formulas on ${SHAPES.map((s) => `[${s}]`).join(" ")}`, async (ctx) => {
    const o = c.opts;
    const [beta1, beta2] = o.betas ?? [0.9, 0.999];
    const ref = SHAPES.map((shape, i) => {
      const n = shape.reduce((a, b) => a * b, 1);
      // small parameters (and one tensor of zeros) so that the update itself, not the old value, dominates p
      const p0 = i === 0 ? new Float32Array(n) : randn(n, 10 + i, 0.03);
      return { shape, n, param: Float64Array.from(p0), m: new Float64Array(n), v: new Float64Array(n), p0 };
    });
    const params = ref.map((r, i) => ({
      name: `p${i}`,
      param: ctx.upload(r.p0, r.shape, "f32", `p${i}`),
      grad: ctx.tensor(r.shape, "f32", `g${i}`),
    }));
    const opt = new Adam(ctx, params, o);
    const worst = { param: 0, m: 0, v: 0 };
    for (let t = 1; t <= 6; t++) {
      const grads = ref.map((r, i) => awkwardGrads(r.n, 100 * t + i));
      params.forEach((p, i) => ctx.write(p.grad, grads[i]));
      assert.equal(opt.lrAt(), c.lr(t));
      const rec = ctx.recorder();
      opt.step(rec);
      await rec.submit();
      const state = opt.state();
      for (const [i, r] of ref.entries()) {
        adamStepRef(r.param, r.m, r.v, grads[i], t, {
          lr: c.lr(t),
          beta1,
          beta2,
          eps: o.eps ?? 1e-8,
          weightDecay: o.weightDecay ?? 0,
          decoupled: o.decoupled ?? false,
        });
        const at = `step ${t} [${r.shape}]`;
        const got = {
          param: await ctx.readF32(params[i].param),
          m: await ctx.readF32(state.get(`p${i}.exp_avg`)!),
          v: await ctx.readF32(state.get(`p${i}.exp_avg_sq`)!),
        };
        for (const k of ["param", "m", "v"] as const) {
          worst[k] = Math.max(worst[k], assertClose(got[k], r[k], 1e-6, `${c.name} ${k} ${at}`));
        }
      }
      assert.equal(opt.steps, t);
    }
    console.log(`  worst rel L2 over 6 steps: ${Object.entries(worst).map(([k, e]) => `${k} ${e.toExponential(2)}`)}`);
    opt.release();
    for (const p of params) ctx.release(p.param, p.grad);
  });
}

gpuTest("Adam: per-parameter weight decay, zero-size parameters and views at aligned offsets", async (ctx) => {
  // one flat buffer holding a [5,4] parameter at byte 0 and a [9] one at byte 256; its gradients likewise
  const flat = randn(64 + 9, 3, 0.1), gflat = randn(64 + 9, 4);
  const P = ctx.upload(flat, [73]), G = ctx.upload(gflat, [73]);
  const view = (t: Tensor, shape: number[], offset: number): Tensor => ({ ...t, shape, offset });
  const empty = ctx.tensor([0, 3]), emptyGrad = ctx.tensor([0, 3]);
  const opt = new Adam(ctx, [
    { name: "w", param: view(P, [5, 4], 0), grad: view(G, [5, 4], 0) },
    { name: "b", param: view(P, [9], 256), grad: view(G, [9], 256), weightDecay: 0 },
    { name: "e", param: empty, grad: emptyGrad },
  ], { lr: 1e-2, weightDecay: 0.5, decoupled: true });
  const rec = ctx.recorder();
  opt.step(rec);
  await rec.submit();
  const got = await ctx.readF32(P);
  const o = { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, decoupled: true };
  const w = Float64Array.from(flat.subarray(0, 20)), b = Float64Array.from(flat.subarray(64));
  adamStepRef(w, new Float64Array(20), new Float64Array(20), gflat.subarray(0, 20), 1, { ...o, weightDecay: 0.5 });
  adamStepRef(b, new Float64Array(9), new Float64Array(9), gflat.subarray(64), 1, { ...o, weightDecay: 0 });
  assertClose(got.subarray(0, 20), w, 1e-6, "view w (decay 0.5)");
  assertClose(got.subarray(64), b, 1e-6, "view b (decay 0)");
  assert.deepEqual(got.subarray(20, 64), flat.subarray(20, 64), "bytes between the views are untouched");
  opt.release();
  ctx.release(P, G, empty, emptyGrad);
});

function twin(ctx: GpuContext, seed: number) {
  const shapes = [[6, 5], [11]];
  const params = shapes.map((shape, i) => {
    const n = shape.reduce((a, b) => a * b, 1);
    return {
      name: `q${i}`,
      param: ctx.upload(randn(n, seed + i), shape),
      grad: ctx.tensor(shape),
    };
  });
  const opt = new Adam(ctx, params, { lr: linearWarmup(1e-2, 3), weightDecay: 0.01, decoupled: true });
  const run = async (t: number) => {
    params.forEach((p, i) => ctx.write(p.grad, randn(p.param.shape.reduce((a, b) => a * b, 1), 1000 * t + i)));
    const rec = ctx.recorder();
    opt.step(rec);
    await rec.submit();
  };
  return { params, opt, run };
}

gpuTest("Adam state()/loadState(): a restored optimiser continues bit-for-bit", async (ctx) => {
  const a = twin(ctx, 50), b = twin(ctx, 50);
  for (let t = 1; t <= 3; t++) await a.run(t);
  // b's parameters and optimiser state come from a's checkpoint
  const rec = ctx.recorder();
  a.params.forEach((p, i) => rec.copy(p.param, b.params[i].param));
  await rec.submit();
  const saved = a.opt.state();
  assert.deepEqual([...saved.keys()], ["q0.exp_avg", "q0.exp_avg_sq", "q1.exp_avg", "q1.exp_avg_sq", "step"]);
  assert.deepEqual([...await ctx.readF32(saved.get("step")!)], [3]);
  await b.opt.loadState(saved);
  assert.equal(b.opt.steps, 3);
  for (let t = 4; t <= 5; t++) await Promise.all([a.run(t), b.run(t)]);
  for (const [i, p] of a.params.entries()) {
    assert.deepEqual(await ctx.readF32(b.params[i].param), await ctx.readF32(p.param), `q${i} after 2 more steps`);
  }
  // a record of plain tensors (e.g. from a safetensors file) with a u32 step of shape [1] loads too
  const rec2 = Object.fromEntries(saved);
  rec2.step = ctx.upload([5], [1], "u32");
  await b.opt.loadState(rec2);
  assert.equal(b.opt.steps, 5);
  for (const x of [a, b]) {
    x.opt.release();
    for (const p of x.params) ctx.release(p.param, p.grad);
  }
  ctx.release(rec2.step);
});

gpuTest("Adam zeroGrad clears every gradient", async (ctx) => {
  const g1 = ctx.upload(randn(10, 1), [10]), g2 = ctx.upload(randn(7, 2), [7]);
  const p1 = ctx.tensor([10]), p2 = ctx.tensor([7]);
  const opt = new Adam(ctx, [{ name: "a", param: p1, grad: g1 }, { name: "b", param: p2, grad: g2 }]);
  const rec = ctx.recorder();
  opt.zeroGrad(rec);
  await rec.submit();
  assert.deepEqual([...await ctx.readF32(g1), ...await ctx.readF32(g2)], new Array(17).fill(0));
  opt.release();
  ctx.release(g1, g2, p1, p2);
});

gpuTest("Adam rejects bad parameters, hyperparameters and states with messages that say why", async (ctx) => {
  const p = ctx.tensor([4, 3], "f32", "W"), g = ctx.tensor([3, 4], "f32", "dW"), gi = ctx.tensor([4, 3], "i32", "di");
  const ok = ctx.tensor([4, 3], "f32", "dW");
  assert.throws(
    () => new Adam(ctx, [{ name: "W", param: p, grad: g }]),
    /gradient "dW" against param "W".*\[3,4\].*\[4,3\]/,
  );
  assert.throws(() => new Adam(ctx, [{ name: "W", param: p, grad: gi }]), /"di" \[4,3\] is i32, expected f32/);
  assert.throws(() => new Adam(ctx, [{ name: "W", param: p, grad: p }]), /share a buffer/);
  assert.throws(
    () => new Adam(ctx, [{ name: "W", param: p, grad: ok }, { name: "W", param: p, grad: ok }]),
    /"W" is given twice/,
  );
  assert.throws(() => new Adam(ctx, [], { betas: [0.9, 1] }), RangeError);
  assert.throws(() => new Adam(ctx, [], { eps: -1 }), /eps must be in \[0, Infinity\], got -1/);
  assert.throws(() => new Adam(ctx, [], { lr: NaN }), /lr must be/);
  const bad = new Adam(ctx, [{ name: "W", param: p, grad: ok }], { lr: (t) => (t > 1 ? NaN : 1) });
  const rec = ctx.recorder();
  bad.step(rec);
  assert.throws(() => bad.step(rec), /lr schedule gave NaN for step 2/);
  await rec.submit();
  const other = ctx.tensor([2, 2]);
  await assert.rejects(
    bad.loadState(new Map([["W.exp_avg", other], ["X.exp_avg_sq", other], ["step", ctx.tensor([])]])),
    (e: Error) =>
      /mis-shaped: W\.exp_avg has shape \[2,2\], config expects \[4,3\]/.test(e.message) &&
      /missing: +W\.exp_avg_sq/.test(e.message) && /unexpected: X\.exp_avg_sq/.test(e.message),
  );
  bad.release();
  ctx.release(p, g, gi, ok, other);
});

gpuTest("end to end: Adam + clipGradNorm fit y = W·x with the tape; the loss drops 100×", async (ctx) => {
  const IN = 7, OUT = 5, N = 64;
  const Wtrue = randn(OUT * IN, 7), X = randn(N * IN, 8);
  const Y = new Float32Array(N * OUT);
  for (let r = 0; r < N; r++) {
    for (let o = 0; o < OUT; o++) {
      let s = 0;
      for (let k = 0; k < IN; k++) s += X[r * IN + k] * Wtrue[o * IN + k];
      Y[r * OUT + o] = s;
    }
  }
  const loss = (W: Float32Array) => {
    let s = 0;
    for (let r = 0; r < N; r++) {
      for (let o = 0; o < OUT; o++) {
        let y = 0;
        for (let k = 0; k < IN; k++) y += X[r * IN + k] * W[o * IN + k];
        s += (y - Y[r * OUT + o]) ** 2;
      }
    }
    return s / (N * OUT);
  };
  const x = ctx.upload(X, [N, IN], "f32", "x"), y = ctx.upload(Y, [N, OUT], "f32", "y");
  const W = ctx.tensor([OUT, IN], "f32", "W"), dW = ctx.tensor([OUT, IN], "f32", "grad:W");
  const opt = new Adam(ctx, [{ name: "W", param: W, grad: dW }], { lr: 0.05 });
  const loss0 = loss(await ctx.readF32(W));
  const norm = ctx.tensor([], "f32", "grad norm");
  let firstNorm = 0;
  for (let step = 0; step < 150; step++) {
    const rec = ctx.recorder();
    opt.zeroGrad(rec);
    const tape = new Tape(ctx);
    tape.watch(W, dW);
    const yhat = new DiffOps(rec, tape).linear(x, W);
    // d mean((ŷ − y)²) / dŷ = 2(ŷ − y) / N
    const seed = binary(rec, "axpby", yhat, y, { alpha: 2 / (N * OUT), beta: -2 / (N * OUT) });
    tape.backward(rec, [[yhat, seed]]);
    rec.recycle(yhat, seed);
    clipGradNorm(rec, opt.grads, 1, { out: norm });
    opt.step(rec);
    await rec.submit();
    if (step === 0) firstNorm = (await ctx.readF32(norm))[0];
  }
  const loss1 = loss(await ctx.readF32(W));
  const lastNorm = (await ctx.readF32(norm))[0];
  console.log(
    `  loss ${loss0.toExponential(3)} → ${loss1.toExponential(3)} (${(loss0 / loss1).toFixed(0)}×); ` +
      `gradient norm ${firstNorm.toFixed(3)} → ${lastNorm.toExponential(2)}`,
  );
  assert.ok(loss1 < loss0 / 100, `loss ${loss0} → ${loss1}: dropped less than 100×`);
  assert.ok(firstNorm > 1, `first gradient norm ${firstNorm}: clipping at 1 was never active`);
  assert.ok(Number.isFinite(lastNorm) && lastNorm < 1e-2, `last gradient norm ${lastNorm}`);
  opt.release();
  ctx.release(x, y, W, dW, norm);
});
