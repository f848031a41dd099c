import { gpuBench } from "./_bench.ts";
import { concat } from "../src/ops/concat.ts";

// SD v1's up_blocks.3 skip connection: cat([h, skip], dim=1) at 64×64
const n = 2 * 960 * 64 * 64;
gpuBench("concat [2,640,64,64] ⊕ [2,320,64,64] on channels", { bytes: 2 * 4 * n }, (ctx) => {
  const h = ctx.tensor([2, 640, 64, 64]), skip = ctx.tensor([2, 320, 64, 64]), out = ctx.tensor([2, 960, 64, 64]);
  return (rec) => void concat(rec, [h, skip], { axis: 1, out });
});
