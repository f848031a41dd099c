// GB/s counts compulsory traffic of all three gradients with accumulate false: x and dout read once, dx written
// once (the kernels read x and dout twice: the group reduction, then the elementwise dx pass).
import { gpuBench } from "./_bench.ts";
import { groupNormBackward } from "../src/ops/group_norm.ts";
import { numel } from "../src/gpu/tensor.ts";

for (const [shape, silu] of [[[2, 320, 64, 64], false], [[2, 320, 64, 64], true], [[2, 1280, 16, 16], true]] as const) {
  const n = numel(shape), c = shape[1];
  gpuBench(
    `groupNormBackward ${JSON.stringify(shape)} groups=32${silu ? " +silu" : ""}`,
    { bytes: 3 * 4 * n },
    (ctx) => {
      const x = ctx.tensor(shape), dout = ctx.tensor(shape), dx = ctx.tensor(shape);
      const stats = ctx.tensor([shape[0], 32, 2]), weight = ctx.tensor([c]), bias = ctx.tensor([c]);
      const dweight = ctx.tensor([c]), dbias = ctx.tensor([c]);
      const opts = { groups: 32, silu, bias, dx, dweight, dbias, accumulate: false };
      return (rec) => void groupNormBackward(rec, { x, dout, stats, weight }, opts);
    },
  );
}
