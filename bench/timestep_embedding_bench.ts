import { gpuBench } from "./_bench.ts";
import { timestepEmbedding } from "../src/ops/timestep_embedding.ts";

// SD v1's time_proj for a CFG batch of 2 (latency-bound: one tiny dispatch per denoising step), and a big batch
for (const b of [2, 4096]) {
  gpuBench(`timestepEmbedding [${b}] → [${b},320]`, { bytes: 4 * (b + b * 320) }, (ctx) => {
    const t = ctx.upload(Float32Array.from({ length: b }, (_, i) => (i * 37.5) % 1000), [b]);
    const out = ctx.tensor([b, 320]);
    return (rec) => void timestepEmbedding(rec, t, 320, { flipSinToCos: true, downscaleFreqShift: 0, out });
  });
}
