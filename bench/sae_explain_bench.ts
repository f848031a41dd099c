import { gpuBench } from "./_bench.ts";
import { featureImageStats, maskIou, mergeTopImages } from "../src/sae/explain.ts";
import { randn } from "../src/ref/random.ts";

// mid_block at 512 px: 8×8 positions per image, n = 5120 latents; 16 images per batch (1024 rows)
{
  const n = 5120, P = 64, images = 16, G = 256;
  gpuBench(`featureImageStats: ${images} images × ${P} positions, n=${n} (γ, max, counts)`, {
    bytes: 2 * images * P * n * 4,
  }, (ctx) => {
    const z = ctx.upload(randn(images * P * n, 1).map((v) => Math.max(v, 0)), [images * P, n]);
    const out = { mean: ctx.tensor([n, G]), max: ctx.tensor([n, G]), counts: ctx.tensor([n], "u32") };
    return (rec) => featureImageStats(rec, z, out, { positions: P, first: 0 });
  });
}

// the running top-8 merge per batch of 51 images (the default batch at n = 5120, 8×8): seed, topk of [n, 59], gather
{
  const n = 5120, T = 8, B = 51;
  gpuBench(`mergeTopImages: n=${n}, top ${T} + ${B} batch images`, { bytes: 2 * n * (T + B) * 4 }, (ctx) => {
    const cand = { mean: ctx.upload(randn(n * (T + B), 3), [n, T + B]), max: ctx.tensor([n, T + B]) };
    const run = { scores: ctx.tensor([n, T]), ids: ctx.tensor([n, T], "u32"), max: ctx.tensor([n, T]) };
    return (rec) => {
      const next = mergeTopImages(rec, cand, run, { base: 1000, k: T });
      rec.recycle(next.scores, next.ids, next.max);
    };
  });
}

// labelling: every latent live on the image (the worst case: silent ones exit early), one 128×128 mask
{
  const n = 512, H = 8, W = 8, S = 128;
  gpuBench(`maskIou: n=${n} live maps ${H}×${W} → ${S}×${S} mask`, { bytes: n * S * S * 4 }, (ctx) => {
    const z = ctx.upload(randn(H * W * n, 2), [H * W, n]);
    const mask = new Float32Array(S * S).map((_, i) => (i % S < S / 2 ? 1 : 0));
    const values = ctx.upload(mask, [S * S]), info = ctx.upload([0, 0, S, S], [1, 4], "u32");
    return (rec) => void maskIou(rec, z, { values, info }, { grid: [H, W] });
  });
}
