// GB/s counts compulsory traffic with accumulate false: y and dout read once, dx written once.
import { gpuBench } from "./_bench.ts";
import { numel } from "../src/gpu/tensor.ts";
import { softmaxBackward } from "../src/ops/softmax.ts";

for (const shape of [[16, 4096, 77], [2, 1024, 1024]]) {
  const n = numel(shape);
  gpuBench(`softmaxBackward ${JSON.stringify(shape)}`, { bytes: 3 * 4 * n }, (ctx) => {
    const y = ctx.tensor(shape), dout = ctx.tensor(shape), dx = ctx.tensor(shape);
    return (rec) => void softmaxBackward(rec, { y, dout }, { scale: 0.125, dx, accumulate: false });
  });
}
