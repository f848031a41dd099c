import { gpuBench } from "./_bench.ts";
import { upsampleNearest } from "../src/ops/upsample.ts";

// SD v1's last Upsample2D: [2, 640, 32, 32] → [2, 640, 64, 64]
const n = 2 * 640 * 32 * 32;
gpuBench("upsampleNearest ×2 [2,640,32,32] → [2,640,64,64]", { bytes: 4 * (n + 4 * n) }, (ctx) => {
  const x = ctx.tensor([2, 640, 32, 32]), out = ctx.tensor([2, 640, 64, 64]);
  return (rec) => void upsampleNearest(rec, x, { out });
});
