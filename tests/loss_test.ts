import assert from "assert";
import { assertClose, gpuTest } from "./_gpu.ts";
import { mseLoss, stopGradDiffLoss, weightedSumLoss } from "../src/autodiff/loss.ts";
import { Tape } from "../src/autodiff/tape.ts";
import { DiffOps } from "../src/autodiff/ops.ts";
import { randn } from "../src/ref/random.ts";

gpuTest("losses: values and gradient seeds against the CPU", async (ctx) => {
  const shape = [4, 3, 5, 7], n = 420;
  const x = randn(n, 1), y = randn(n, 2);
  const tx = ctx.upload(x, shape), ty = ctx.upload(y, shape);
  const rec = ctx.recorder();
  const ws = weightedSumLoss(rec, tx, ty);
  const mse = mseLoss(rec, tx, ty);
  const sg = stopGradDiffLoss(rec, tx);
  await rec.submit();
  const val = async (t: typeof ws.value) => (await ctx.readF32(t))[0];
  let s = 0, m = 0, d = 0;
  for (let i = 0; i < n; i++) s += x[i] * y[i], m += (x[i] - y[i]) ** 2;
  for (let i = 0; i < n / 2; i++) d += (x[i] - x[i + n / 2]) ** 2;
  assert.ok(Math.abs(await val(ws.value) - s) < 1e-4 * Math.abs(s) + 1e-5);
  assert.ok(Math.abs(await val(mse.value) - m / n) < 1e-5 * (m / n));
  assert.ok(Math.abs(await val(sg.value) - d) < 1e-5 * d);
  assertClose(await ctx.readF32(ws.seed), y, 1e-7, "weighted-sum seed");
  assertClose(await ctx.readF32(mse.seed), x.map((v, i) => (2 * (v - y[i])) / n), 1e-6, "mse seed");
  const want = new Float32Array(n).map((_, i) => (i < n / 2 ? 2 * (x[i] - x[i + n / 2]) : 0));
  assertClose(await ctx.readF32(sg.seed), want, 1e-6, "stop-gradient seed");
  ctx.release(tx, ty, ws.value, ws.seed, mse.value, mse.seed, sg.value, sg.seed);
});

gpuTest("gradients accumulate across backward calls (a sum over timesteps is a loop)", async (ctx) => {
  const x = ctx.upload(randn(6 * 5, 3), [6, 5]), w = ctx.upload(randn(4 * 5, 4), [4, 5], "f32", "w");
  const target = ctx.upload(randn(6 * 4, 5), [6, 4]);
  const tape = new Tape(ctx);
  const gw = tape.watch(w);
  const once = async () => {
    const rec = ctx.recorder();
    const y = new DiffOps(rec, tape).linear(x, w);
    const loss = mseLoss(rec, y, target);
    tape.backward(rec, [[y, loss.seed]]);
    await rec.submit();
    ctx.release(y, loss.value, loss.seed);
  };
  await once();
  const g1 = await ctx.readF32(gw);
  await once();
  await once();
  assertClose(await ctx.readF32(gw), g1.map((v) => 3 * v), 1e-6, "three accumulated backward calls");
});
