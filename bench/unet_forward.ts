/**
 * One full-size SD v1.4 U-Net evaluation with random weights: seconds per evaluation and peak GPU memory.
 *
 *   deno run -A bench/unet_forward.ts [--size 64] [--batch 2] [--tokens 77] [--iters 1] [--weights f32|f16]
 *
 * The full-size run (64×64 latents, batch 2 as classifier-free guidance runs it) is for a real GPU. On a software
 * adapter, run a smaller latent size: the script reports the achieved GFLOP/s and extrapolates the full-size time
 * from the FLOP count (an estimate, printed as such: attention's share grows with the square of the tokens).
 */
import { unetFlops } from "../src/models/unet/flops.ts";
import { unetBench } from "./_unet.ts";

const { values, S, B, T, iters, ctx, unet, sample, ehs, ts, loadSeconds } = await unetBench(
  { weights: { type: "string", default: "f32" } },
  981,
  (v) => v.weights as "f32" | "f16",
);
console.log(
  `random ${values.weights} weights: ${loadSeconds.toFixed(1)} s, ${(ctx.memory.current / 2 ** 30).toFixed(2)} GiB`,
);

const weights = ctx.memory.current;
ctx.resetPeak();
const times: number[] = [];
for (let i = 0; i < iters + 1; i++) { // the first evaluation builds pipelines: not timed
  const t = performance.now();
  const rec = ctx.recorder("unet");
  const out = unet.forward(rec, { sample, timesteps: ts, encoderHiddenStates: ehs });
  await rec.submit();
  await ctx.sync();
  if (i > 0) times.push((performance.now() - t) / 1000);
  ctx.release(out);
  console.log(
    `evaluation ${i}${i === 0 ? " (warm-up, builds pipelines)" : ""}: ${((performance.now() - t) / 1000).toFixed(2)} s`,
  );
}
const sec = Math.min(...times);
const flops = unetFlops(unet.arch, B, S, S, T);
const full = unetFlops(unet.arch, 2, 64, 64, 77);
console.log(`\nU-Net SD v1.4, ${S}×${S} latents, batch ${B}, ${T} tokens`);
console.log(
  `  seconds per evaluation: ${sec.toFixed(3)}   (${(flops / 1e9).toFixed(1)} GFLOP → ${
    (flops / sec / 1e9).toFixed(2)
  } GFLOP/s)`,
);
console.log(
  `  peak GPU memory: ${(ctx.memory.peak / 2 ** 30).toFixed(2)} GiB (weights ${
    (weights / 2 ** 30).toFixed(2)
  } GiB + activations ${((ctx.memory.peak - weights) / 2 ** 30).toFixed(2)} GiB)`,
);
console.log(`  largest single buffer: ${(ctx.memory.largestBuffer / 2 ** 20).toFixed(1)} MiB`);
if (S !== 64 || B !== 2) {
  console.log(
    `  extrapolated full size (64×64, batch 2, ${(full / 1e12).toFixed(2)} TFLOP) at this rate: ~${
      (full / (flops / sec)).toFixed(0)
    } s per evaluation (estimate)`,
  );
}
unet.release();
ctx.destroy();
