import { gpuBench } from "./_bench.ts";
import { concatBackward } from "../src/ops/concat.ts";

// SD v1's up_blocks.3 skip connection at 64×64: dy [2, 960, 64, 64] split into [2, 640, …] and [2, 320, …]
const n = 2 * 960 * 64 * 64;
for (const accumulate of [false, true]) {
  gpuBench(
    `concat backward [2,960,64,64] → [2,640,…] ⊕ [2,320,…] (${
      accumulate ? "accumulate: kernel" : "overwrite: copies"
    })`,
    { bytes: (accumulate ? 3 : 2) * 4 * n },
    (ctx) => {
      const dy = ctx.tensor([2, 960, 64, 64]), dh = ctx.tensor([2, 640, 64, 64]), ds = ctx.tensor([2, 320, 64, 64]);
      return (rec) => void concatBackward(rec, dy, { dxs: [dh, ds], accumulate });
    },
    { group: "concat backward" },
  );
}
