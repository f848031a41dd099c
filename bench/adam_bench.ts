import { gpuBench } from "./_bench.ts";
import type { GpuContext, Tensor } from "../src/gpu/mod.ts";
import { fill } from "../src/ops/fill.ts";
import { Adam, clipGradNorm, gradNorm } from "../src/optim/mod.ts";

// An SAE on a 1280-wide SD activation with 4× expansion: W_enc and W_dec, 5120 × 1280 each (6.55M elements).
const SHAPE = [5120, 1280], N = 2 * 5120 * 1280;

function gradients(ctx: GpuContext): Tensor[] {
  const gs = [0, 1].map((i) => ctx.tensor(SHAPE, "f32", `grad${i}`));
  const rec = ctx.recorder();
  gs.forEach((g, i) => fill(rec, g, { normal: [0, 1e-3], seed: i }));
  void rec.submit();
  return gs;
}

// reads p, g, m, v and writes p, m, v: 28 bytes per element
gpuBench("Adam step 2 × [5120,1280] (SAE W_enc, W_dec)", { bytes: 28 * N }, (ctx) => {
  const grads = gradients(ctx);
  const opt = new Adam(ctx, grads.map((grad, i) => ({ name: `W${i}`, param: ctx.tensor(SHAPE), grad })), {
    lr: 4e-4,
    eps: 6.25e-10,
  });
  return (rec) => opt.step(rec);
});

// the norm reads every gradient once; clipping then reads and writes them again: 12 bytes per element
gpuBench("clipGradNorm 2 × [5120,1280], clipping", { bytes: 12 * N }, (ctx) => {
  const grads = gradients(ctx);
  // a fixed maxNorm would be met after the first pass (the scale then is 1 and nothing is written): halve it instead
  let maxNorm = 1e-3 * Math.sqrt(N);
  return (rec) => rec.recycle(clipGradNorm(rec, grads, maxNorm /= 2));
});

gpuBench("clipGradNorm 2 × [5120,1280], below the threshold", { bytes: 4 * N }, (ctx) => {
  const grads = gradients(ctx);
  return (rec) => rec.recycle(clipGradNorm(rec, grads, 1e9));
});

gpuBench("gradNorm 2 × [5120,1280]", { bytes: 4 * N }, (ctx) => {
  const grads = gradients(ctx);
  return (rec) => rec.recycle(gradNorm(rec, grads));
});
