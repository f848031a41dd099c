import { gpuBench } from "./_bench.ts";
import { fill } from "../src/ops/fill.ts";

const n = 1280 * 2560 * 9; // the largest SD U-Net weight
gpuBench("fill normal 29.5M f32 (random weights)", { bytes: 4 * n }, (ctx) => {
  const t = ctx.tensor([n]);
  return (rec) => void fill(rec, t, { normal: [0, 0.02], seed: 1 });
});
