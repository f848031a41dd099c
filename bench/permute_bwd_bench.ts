import { gpuBench } from "./_bench.ts";
import { permuteBackward } from "../src/ops/permute.ts";

// the transformer block's layout change at 64×64 backward: dy [2, 64, 64, 320] → dx [2, 320, 64, 64]
const n = 2 * 320 * 64 * 64;
for (const accumulate of [false, true]) {
  gpuBench(
    `permute backward [2,64,64,320] → [2,320,64,64] (${accumulate ? "accumulate" : "overwrite"})`,
    { bytes: (accumulate ? 3 : 2) * 4 * n },
    (ctx) => {
      const dy = ctx.tensor([2, 64, 64, 320]), dx = ctx.tensor([2, 320, 64, 64]);
      return (rec) => void permuteBackward(rec, dy, [0, 2, 3, 1], { dx, accumulate });
    },
    { group: "permute backward" },
  );
}
