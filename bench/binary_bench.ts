import { gpuBench } from "./_bench.ts";
import { add } from "../src/ops/binary.ts";

const n = 4 * 320 * 64 * 64;
gpuBench("binary add 5.2M f32 (residual add at 64×64×320, batch 4)", { bytes: 3 * 4 * n }, (ctx) => {
  const a = ctx.tensor([4, 320, 64, 64]), b = ctx.tensor([4, 320, 64, 64]), out = ctx.tensor([4, 320, 64, 64]);
  return (rec) => void add(rec, a, b, { out });
});
gpuBench("binary add broadcast bias [2,320,64,64] + [320,1,1]", { bytes: 2 * 4 * n / 2 }, (ctx) => {
  const a = ctx.tensor([2, 320, 64, 64]), b = ctx.tensor([320, 1, 1]), out = ctx.tensor([2, 320, 64, 64]);
  return (rec) => void add(rec, a, b, { out });
});
