// GB/s counts compulsory traffic: x read once, out written once.
import { gpuBench } from "./_bench.ts";
import { numel } from "../src/gpu/tensor.ts";
import { softmax } from "../src/ops/softmax.ts";

for (const shape of [[16, 4096, 77], [2, 1024, 1024], [1000, 1000]]) {
  const n = numel(shape);
  gpuBench(`softmax ${JSON.stringify(shape)}`, { bytes: 2 * 4 * n }, (ctx) => {
    const x = ctx.tensor(shape), out = ctx.tensor(shape);
    return (rec) => void softmax(rec, x, { out, scale: 0.125 });
  });
}
