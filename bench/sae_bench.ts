/**
 * TopK SAE benchmarks: one training step (forward, loss, sparse backward, decoder constraint, Adam) at SDLens'
 * size (d 1280, n 5120, k 20, batch 4096) in tokens/s, with AuxK skipped (no latent dead yet) and with AuxK over
 * 256 slots (every latent dead: the worst case); and the fixture-size forward + backward, sparse and dense.
 *
 *   XDG_RUNTIME_DIR=/tmp/xdg deno bench -A bench/sae_bench.ts
 */
import { benchCtx, gpuBench } from "./_bench.ts";
import type { GpuContext, Recorder, Tensor } from "../src/gpu/mod.ts";
import { fill } from "../src/ops/fill.ts";
import { matmul } from "../src/ops/matmul.ts";
import {
  denseBackward,
  denseDecode,
  initSaeWeights,
  resolveTrainConfig,
  Sae,
  saeBackward,
  saeConfig,
  saeForward,
  saeLoss,
  SaeTrainer,
} from "../src/sae/mod.ts";

const FULL = { d: 1280, nLatents: 5120, k: 20, batchSize: 4096 };

/** Random SAE weights and a random batch, all on the GPU. */
function setup(ctx: GpuContext, d: number, n: number, k: number, B: number): { sae: Sae; x: Tensor } {
  const sae = new Sae(ctx, saeConfig({ d, nLatents: n, k }));
  const x = ctx.persist(ctx.tensor([B, d], "f32", "x"));
  const rec = ctx.recorder();
  initSaeWeights(rec, sae, { seed: 1 });
  fill(rec, x, { normal: [0, 1], seed: 2 });
  rec.submit();
  return { sae, x };
}

const rows: { name: string; tokens: number; seconds: number[] }[] = [];

/** A training-step bench that reports tokens/s: pipelines are built before timing; two timed steps. */
function stepBench(name: string, aux: boolean): void {
  const row = { name, tokens: FULL.batchSize, seconds: [] as number[] };
  rows.push(row);
  let state: { trainer: SaeTrainer; x: Tensor; scalars: Tensor } | null = null;
  const record = (rec: Recorder) => state!.trainer.recordStep(rec, state!.x, state!.scalars, { aux });
  Deno.bench({
    name,
    group: "sae step",
    ignore: benchCtx === null,
    warmup: 0,
    n: 2,
    async fn(b) {
      const ctx = benchCtx!;
      if (!state) {
        const { sae, x } = setup(ctx, FULL.d, FULL.nLatents, FULL.k, FULL.batchSize);
        // deadSteps 0: every latent counts as dead, so AuxK's 256 slots are all live (its costliest case)
        const config = resolveTrainConfig({ ...FULL, kAux: 256, deadSteps: aux ? 0 : 2441 });
        state = { trainer: new SaeTrainer(ctx, sae, config), x, scalars: ctx.persist(ctx.tensor([16])) };
        const rec = ctx.recorder();
        record(rec);
        await rec.submit();
        await ctx.sync();
      }
      b.start();
      const t0 = performance.now();
      const rec = ctx.recorder();
      record(rec);
      await rec.submit();
      await ctx.sync();
      row.seconds.push((performance.now() - t0) / 1000);
      b.end();
    },
  });
}

// The step's floor: its one dense product, the encoder matmul (2·B·n·d = 54 GFLOP).
gpuBench("encoder matmul alone [4096,1280]·[5120,1280]ᵀ", { flops: 2 * 4096 * 5120 * 1280 }, (ctx) => {
  const { sae, x } = setup(ctx, FULL.d, FULL.nLatents, FULL.k, FULL.batchSize);
  const pre = ctx.persist(ctx.tensor([FULL.batchSize, FULL.nLatents]));
  return (rec) => void matmul(rec, x, sae.params.W_enc, { transB: true, bias: sae.params.b_enc, out: pre });
}, { group: "sae step" });
stepBench("train step d1280 n5120 k20 B4096, AuxK skipped", false);
stepBench("train step d1280 n5120 k20 B4096, AuxK 256 (all dead)", true);

// The fixture's size (tests/sae_test.ts): forward + loss + backward, sparse and dense paths.
for (const dense of [false, true]) {
  const [B, d, n, k, kAux] = [128, 64, 256, 8, 32];
  // encoder matmul + (dense: decoder and three backward matmuls over n; sparse: gathers over k + kAux)
  const flops = 2 * B * n * d * (dense ? 5 : 1) + 2 * B * (k + kAux) * d * (dense ? 0 : 4);
  gpuBench(
    `SAE fwd+bwd fixture size [${B},${d}] n${n} k${k} kAux${kAux}, ${dense ? "dense" : "sparse"}`,
    { flops },
    (ctx) => {
      const { sae, x } = setup(ctx, d, n, k, B);
      const deadMask = ctx.persist(ctx.tensor([n]));
      const grads = sae.zerosLike();
      const rec0 = ctx.recorder();
      fill(rec0, deadMask, { value: 1 });
      rec0.submit();
      return (rec) => {
        const fwd = saeForward(rec, sae, x, { kAux, deadMask });
        const xHat = dense ? denseDecode(rec, sae, fwd).xHat : fwd.xHat;
        const { dx } = saeLoss(rec, { x, xHat, auxRecon: fwd.auxRecon, values: fwd.code.values });
        (dense ? denseBackward : saeBackward)(rec, sae, fwd, dx!, grads, { accumulate: false });
      };
    },
    { group: "sae fixture size", baseline: !dense },
  );
}

globalThis.addEventListener("unload", () => {
  const done = rows.filter((r) => r.seconds.length > 0);
  if (!done.length) return;
  console.log("\nSAE training throughput (best step):");
  for (const r of done) {
    const best = Math.min(...r.seconds);
    console.log(`  ${r.name.padEnd(56)} ${(r.tokens / best).toFixed(0).padStart(8)} tokens/s   (${best.toFixed(2)} s)`);
  }
});
