import { gpuBench } from "./_bench.ts";
import { permute } from "../src/ops/permute.ts";

// the transformer block's layout change at 64×64: [B, C, H, W] → [B, H·W, C]
const n = 2 * 320 * 64 * 64;
for (const naive of [false, true]) {
  gpuBench(
    `permute [2,320,64,64] → [2,64,64,320] (${naive ? "v1 naive" : "v2 tiled"})`,
    { bytes: 2 * 4 * n },
    (ctx) => {
      const x = ctx.tensor([2, 320, 64, 64]), out = ctx.tensor([2, 64, 64, 320]);
      return (rec) => void permute(rec, x, [0, 2, 3, 1], { out, naive });
    },
    { group: "nchw→nhwc", baseline: naive },
  );
}
// attention head split at 64×64 with SD v1's 8 heads of 40
gpuBench("permute head split [2,4096,8,40] → [2,8,4096,40]", { bytes: 2 * 4 * n }, (ctx) => {
  const x = ctx.tensor([2, 4096, 8, 40]), out = ctx.tensor([2, 8, 4096, 40]);
  return (rec) => void permute(rec, x, [0, 2, 1, 3], { out });
});
