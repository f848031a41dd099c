import { gpuBench } from "./_bench.ts";
import { gegluBackward } from "../src/ops/geglu.ts";

// SD v1's feed-forward at 64×64: dy [2, 4096, 1280] → dx [2, 4096, 2560] (x read, dx written, no accumulation)
const n = 2 * 4096 * 1280;
gpuBench("geglu backward [2,4096,1280] → [2,4096,2560] (overwrite)", { bytes: 4 * (n + 2 * n + 2 * n) }, (ctx) => {
  const x = ctx.tensor([2, 4096, 2560]), dy = ctx.tensor([2, 4096, 1280]), dx = ctx.tensor([2, 4096, 2560]);
  return (rec) => void gegluBackward(rec, { dy, x }, { dx, accumulate: false });
});
