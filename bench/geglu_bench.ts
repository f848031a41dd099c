import { gpuBench } from "./_bench.ts";
import { geglu } from "../src/ops/geglu.ts";

// SD v1's feed-forward at 64×64: proj [2, 4096, 2·1280] → [2, 4096, 1280]
gpuBench("geglu [2,4096,2560] → [2,4096,1280]", { bytes: 4 * (2 * 4096 * 2560 + 2 * 4096 * 1280) }, (ctx) => {
  const x = ctx.tensor([2, 4096, 2560]), out = ctx.tensor([2, 4096, 1280]);
  return (rec) => void geglu(rec, x, { out });
});
