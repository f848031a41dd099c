import { assertClose, gpuTest } from "./_gpu.ts";
import { fdGrad } from "./_fd.ts";
import { layerNorm, layerNormBackward } from "../src/ops/layer_norm.ts";
import { layerNormBackwardRef, layerNormRef } from "../src/ref/layer_norm.ts";
import { randn } from "../src/ref/random.ts";
import { numel } from "../src/gpu/tensor.ts";
import assert from "assert";

const cases: { shape: number[]; offset?: number }[] = [
  { shape: [2, 77, 768] }, // CLIP: 154 rows, two column chunks
  { shape: [3, 37, 320], offset: 4 }, // U-Net transformer at 320 channels, odd token count, far from zero-mean
  { shape: [7, 3] }, // rows shorter than the workgroup and than a column tile
  { shape: [1000] }, // a single row, D not a power of two
  { shape: [2, 3, 2, 1027] }, // D above the largest workgroup, rank 4
  { shape: [66000, 3] }, // more rows than workgroups per grid dimension (dx_rows folds over y), 516 column chunks
];

function setup(shape: number[], offset = 0, seed = 70) {
  const d = shape[shape.length - 1], rows = numel(shape) / d;
  const x = randn(numel(shape), seed).map((v) => offset + v);
  const w = randn(d, seed + 1).map((v) => 1 + 0.2 * v), b = randn(d, seed + 2, 0.1);
  const dout = randn(x.length, seed + 3);
  const stats = new Float32Array(rows * 2);
  layerNormRef(new Float32Array(x.length), x, w, b, rows, d, 1e-5, stats);
  return { d, rows, x, w, b, dout, stats, want: layerNormBackwardRef(x, dout, stats, w, rows, d) };
}

for (const { shape, offset } of cases) {
  gpuTest(`layerNormBackward ${JSON.stringify(shape)}`, async (ctx) => {
    const { d, x, w, dout, stats, want } = setup(shape, offset);
    const tx = ctx.upload(x, shape), tdout = ctx.upload(dout, shape);
    const tstats = ctx.upload(stats, [...shape.slice(0, -1), 2]), tw = ctx.upload(w, [d]);
    const prior = { dx: randn(x.length, 7), dweight: randn(d, 8), dbias: randn(d, 9) };
    const grads = () => ({
      dx: ctx.upload(prior.dx, shape),
      dweight: ctx.upload(prior.dweight, [d]),
      dbias: ctx.upload(prior.dbias, [d]),
    });
    const acc = grads(), over = grads();
    const rec = ctx.recorder();
    const inputs = { x: tx, dout: tdout, stats: tstats, weight: tw };
    assert.deepEqual(layerNormBackward(rec, inputs, acc), acc);
    layerNormBackward(rec, inputs, { ...over, accumulate: false });
    await rec.submit();
    const errs: string[] = [];
    for (const g of ["dx", "dweight", "dbias"] as const) {
      const p = prior[g];
      errs.push(`${g} ${assertClose(await ctx.readF32(over[g]), want[g], 1e-5, `${g} overwritten`).toExponential(1)}`);
      assertClose(await ctx.readF32(acc[g]), want[g].map((v, i) => v + p[i]), 1e-5, `${g} accumulated`);
    }
    console.log(`  rel L2: ${errs.join(", ")}`);
    ctx.release(tx, tdout, tstats, tw, ...Object.values(acc), ...Object.values(over));
  });
}

// Finite differences of the float64 forward, through the GPU forward's own stats.
for (const shape of [[3, 5], [2, 2, 7]]) {
  gpuTest(`layerNormBackward ${JSON.stringify(shape)} matches finite differences`, async (ctx) => {
    const d = shape[shape.length - 1], rows = numel(shape) / d, eps = 1e-5;
    const x = randn(numel(shape), 80), w = randn(d, 81).map((v) => 1 + 0.3 * v), b = randn(d, 82, 0.5);
    const probe = randn(x.length, 83); // L = Σ out · probe, so dout = probe
    const tx = ctx.upload(x, shape), tw = ctx.upload(w, [d]), tb = ctx.upload(b, [d]), tp = ctx.upload(probe, shape);
    const stats = ctx.tensor([...shape.slice(0, -1), 2]);
    const dx = ctx.tensor(shape), dweight = ctx.tensor([d]), dbias = ctx.tensor([d]);
    const rec = ctx.recorder();
    layerNorm(rec, tx, { weight: tw, bias: tb, eps, stats });
    layerNormBackward(rec, { x: tx, dout: tp, stats, weight: tw }, { dx, dweight, dbias, accumulate: false });
    await rec.submit();
    const fwd = (xv: ArrayLike<number>, wv: ArrayLike<number>, bv: ArrayLike<number>) => {
      const out = new Float64Array(xv.length);
      layerNormRef(out, xv, wv, bv, rows, d, eps);
      return out;
    };
    const errs = [
      assertClose(await ctx.readF32(dx), fdGrad((v) => fwd(v, w, b), x, probe), 1e-3, "dx vs finite differences"),
      assertClose(await ctx.readF32(dweight), fdGrad((v) => fwd(x, v, b), w, probe), 1e-3, "dweight vs FD"),
      assertClose(await ctx.readF32(dbias), fdGrad((v) => fwd(x, w, v), b, probe), 1e-3, "dbias vs FD"),
    ];
    console.log(`  rel err vs FD (dx, dweight, dbias): ${errs.map((e) => e.toExponential(1)).join(", ")}`);
    ctx.release(tx, tw, tb, tp, stats, dx, dweight, dbias);
  });
}

gpuTest("layerNormBackward computes only the gradients it is given", async (ctx) => {
  const shape = [5, 9, 40];
  const { x, w, dout, stats, want } = setup(shape, 0, 90);
  const tx = ctx.upload(x, shape), tdout = ctx.upload(dout, shape), tstats = ctx.upload(stats, [5, 9, 2]);
  const tw = ctx.upload(w, [40]);
  const inputs = { x: tx, dout: tdout, stats: tstats, weight: tw };
  const dbias = ctx.tensor([40]), dx = ctx.tensor(shape);
  const rec = ctx.recorder();
  assert.deepEqual(layerNormBackward(rec, inputs), {});
  assert.equal(rec.dispatches, 0);
  assert.deepEqual(layerNormBackward(rec, inputs, { dbias, accumulate: false }), { dbias });
  assert.equal(rec.dispatches, 2); // col_partial, one parameter sum
  assert.deepEqual(layerNormBackward(rec, inputs, { dx, accumulate: false }), { dx });
  assert.equal(rec.dispatches, 3); // dx_rows
  await rec.submit();
  assertClose(await ctx.readF32(dbias), want.dbias, 1e-5, "dbias alone");
  assertClose(await ctx.readF32(dx), want.dx, 1e-5, "dx alone");
  ctx.release(tx, tdout, tstats, tw, dbias, dx);
});

gpuTest("layerNormBackward validates shapes and aliasing, naming the shapes", (ctx) => {
  const rec = ctx.recorder();
  const x = ctx.tensor([2, 77, 768], "f32", "x"), stats = ctx.tensor([2, 77, 2], "f32", "stats");
  const w = ctx.tensor([768], "f32", "w"), w2 = ctx.tensor([320], "f32", "w2"), s2 = ctx.tensor([154, 2], "f32", "s2");
  const ok = { x, dout: x, stats, weight: w };
  assert.throws(
    () => layerNormBackward(rec, { ...ok, dout: s2 }),
    /layerNorm backward: dout "s2" \(x is \[2,77,768\]\): shape \[154,2\] does not match expected \[2,77,768\]/,
  );
  assert.throws(
    () => layerNormBackward(rec, { ...ok, stats: s2 }),
    /stats "s2" \(x is \[2,77,768\]\): shape \[154,2\] does not match expected \[2,77,2\]/,
  );
  assert.throws(() => layerNormBackward(rec, { ...ok, weight: w2 }), /weight "w2" .*\[320\] does not match/);
  assert.throws(() => layerNormBackward(rec, ok, { dbias: w2 }), /dbias "w2": shape \[320\] does not match/);
  assert.throws(() => layerNormBackward(rec, ok, { dweight: w }), /dweight "w" shares its buffer with input "w"/);
  ctx.release(x, stats, w, w2, s2);
});

gpuTest("layerNormBackward of no rows: dbias is a sum of nothing", async (ctx) => {
  const x = ctx.tensor([0, 4]), stats = ctx.tensor([0, 2]), w = ctx.tensor([4]), over = ctx.upload([1, 2, 3, 4], [4]);
  const rec = ctx.recorder();
  layerNormBackward(rec, { x, dout: x, stats, weight: w }, { dbias: over, accumulate: false });
  await rec.submit();
  assert.deepEqual([...await ctx.readF32(over)], [0, 0, 0, 0]);
  ctx.release(x, stats, w, over);
});
