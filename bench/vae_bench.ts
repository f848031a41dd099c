/**
 * SD v1.4 VAE (random weights): decode latents of S×S and encode images of 8S×8S, seconds per pass and GFLOP/s.
 *
 *   VAE_BENCH_SIZE=64 deno bench -A bench/vae_bench.ts     # full size: [1,4,64,64] ↔ [1,3,512,512]
 *
 * The default S = 8 (64×64 images) keeps an iteration to a few seconds on a software adapter (lavapipe); the
 * full-size decode is 2.5 TFLOP, minutes there (tests/vae_test.ts runs it once). A pass submits once per module,
 * so these benches time whole passes with `Deno.bench` (not `gpuBench`) and print their GFLOP/s at the end.
 */
import { benchCtx } from "./_bench.ts";
import type { Tensor } from "../src/gpu/mod.ts";
import { fill } from "../src/ops/fill.ts";
import {
  type AutoencoderKL,
  parseVAEConfig,
  randomVAE,
  vaeArch,
  vaeDecodeFlops,
  vaeEncodeFlops,
} from "../src/models/vae/mod.ts";

const S = Number(Deno.env.get("VAE_BENCH_SIZE") ?? 8);
const sd14 = JSON.parse(await Deno.readTextFile(new URL("../../shared/fixtures/sd14/sd14-vae.json", import.meta.url)));

let vae: AutoencoderKL | null = null;
async function setup(shape: number[], seed: number): Promise<[AutoencoderKL, Tensor]> {
  const ctx = benchCtx!;
  vae ??= await randomVAE(ctx, parseVAEConfig(sd14.config), 0);
  const x = ctx.tensor(shape);
  const rec = ctx.recorder();
  fill(rec, x, { normal: [0, 1], seed });
  await rec.submit();
  return [vae, x];
}

function bench(name: string, flops: number, shape: number[], run: (vae: AutoencoderKL, x: Tensor) => Promise<void>) {
  let input: [AutoencoderKL, Tensor] | null = null;
  let best = Infinity;
  Deno.bench({
    name,
    ignore: benchCtx === null,
    warmup: 1, // the first pass builds pipelines
    n: 2,
    async fn(b) {
      input ??= await setup(shape, 1);
      b.start();
      const t0 = performance.now();
      await run(...input);
      await benchCtx!.sync();
      best = Math.min(best, (performance.now() - t0) / 1000);
      b.end();
    },
  });
  globalThis.addEventListener("unload", () => {
    if (best === Infinity) return;
    const rate = (flops / best / 1e9).toFixed(2);
    console.log(`  ${name}: ${best.toFixed(2)} s (${(flops / 1e9).toFixed(1)} GFLOP, ${rate} GFLOP/s)`);
  });
}

const arch = vaeArch(parseVAEConfig(sd14.config));
const s8 = 8 * S;
bench(`VAE decode [1,4,${S},${S}] → [1,3,${s8},${s8}]`, vaeDecodeFlops(arch, S, S), [1, 4, S, S], async (v, z) => {
  benchCtx!.release(await v.decode(z));
});
bench(`VAE encode [1,3,${s8},${s8}]`, vaeEncodeFlops(arch, s8, s8), [1, 3, s8, s8], async (v, x) => {
  (await v.encode(x)).release();
});
