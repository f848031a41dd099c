/**
 * Forward + backward of the full-size SD v1.4 U-Net with random weights, gradients to the 32 feed-forward weights
 * only (what CAD scores): seconds per forward+backward and peak GPU memory.
 *
 *   deno run -A bench/unet_backward.ts [--size 64] [--batch 2] [--tokens 77] [--iters 1] [--params "*.ff.net.*.weight"]
 *     [--recompute]   (keep only block inputs in the forward and recompute each block in the backward)
 *
 * Full size (64×64 latents, batch 2) is for a real GPU; on a software adapter run a smaller latent size and read
 * the extrapolation (an estimate from the FLOP count, printed as such; backward costs about 2× forward).
 */
import { unetFlops } from "../src/models/unet/flops.ts";
import { Tape } from "../src/autodiff/tape.ts";
import { selectNames } from "../src/autodiff/select.ts";
import { byteLength, type Tensor } from "../src/gpu/tensor.ts";
import { fill } from "../src/ops/fill.ts";
import { unetBench } from "./_unet.ts";

const { values, S, B, T, iters, ctx, unet, sample, ehs, ts } = await unetBench({
  params: { type: "string", default: "*.ff.net.*.weight" },
  recompute: { type: "boolean", default: false },
}, 501);
const seed = ctx.tensor([B, 4, S, S]);
let rec = ctx.recorder("loss weights");
fill(rec, seed, { normal: [0, 1], seed: 3 });
await rec.submit();

const names = selectNames(unet.params.keys(), values.params!);
const tape = new Tape(ctx);
const before = ctx.memory.current;
const grads: Tensor[] = names.map((n) => tape.watch(unet.params.get(n)!));
const gradBytes = ctx.memory.current - before;
const weights = before;
ctx.resetPeak();
const times: number[] = [];
for (let i = 0; i < iters + 1; i++) {
  const t = performance.now();
  rec = ctx.recorder("forward+backward");
  const out = unet.forward(rec, { sample, timesteps: ts, encoderHiddenStates: ehs }, {
    tape,
    recompute: values.recompute,
  });
  tape.backward(rec, [[out, seed]]);
  await rec.submit();
  await ctx.sync();
  ctx.release(out);
  const dt = (performance.now() - t) / 1000;
  if (i > 0) times.push(dt);
  console.log(`forward+backward ${i}${i === 0 ? " (warm-up, builds pipelines)" : ""}: ${dt.toFixed(2)} s`);
}
const sec = Math.min(...times);
const fwd = unetFlops(unet.arch, B, S, S, T);
const full = unetFlops(unet.arch, 2, 64, 64, 77);
console.log(
  `\nU-Net SD v1.4 forward+backward, ${S}×${S} latents, batch ${B}; gradients for ${names.length} tensors (${values.params})${
    values.recompute ? ", blocks recomputed in the backward" : ""
  }`,
);
console.log(
  `  seconds per forward+backward: ${sec.toFixed(3)}  (≈${
    (3 * fwd / 1e9).toFixed(0)
  } GFLOP counting backward as 2× forward → ${(3 * fwd / sec / 1e9).toFixed(2)} GFLOP/s)`,
);
console.log(
  `  parameter-gradient memory: ${(gradBytes / 2 ** 20).toFixed(1)} MiB (= ${
    (names.reduce((a, n) => a + byteLength(unet.params.get(n)!), 0) / 2 ** 20).toFixed(1)
  } MiB of selected weights)`,
);
console.log(
  `  peak GPU memory: ${(ctx.memory.peak / 2 ** 30).toFixed(2)} GiB (weights ${(weights / 2 ** 30).toFixed(2)} GiB)`,
);
if (S !== 64 || B !== 2) {
  console.log(
    `  extrapolated full size (64×64, batch 2) at this rate: ~${(3 * full / (3 * fwd / sec)).toFixed(0)} s (estimate)`,
  );
}
ctx.release(...grads);
unet.release();
ctx.destroy();
