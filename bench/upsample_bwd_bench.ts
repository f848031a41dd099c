import { gpuBench } from "./_bench.ts";
import { upsampleNearestBackward } from "../src/ops/upsample.ts";

// SD v1's last Upsample2D backward: dy [2, 640, 64, 64] → dx [2, 640, 32, 32] (2×2 sum pooling)
const n = 2 * 640 * 32 * 32;
gpuBench("upsampleNearest backward ×2 [2,640,64,64] → [2,640,32,32]", { bytes: 4 * (4 * n + 2 * n) }, (ctx) => {
  const dy = ctx.tensor([2, 640, 64, 64]), dx = ctx.tensor([2, 640, 32, 32]);
  return (rec) => void upsampleNearestBackward(rec, dy, { dx });
});
