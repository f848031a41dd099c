// GB/s counts compulsory traffic of all three gradients with accumulate false: x and dout read once, dx written
// once (the kernels read x and dout twice: dx per row, then the column sums for dweight and dbias).
import { gpuBench } from "./_bench.ts";
import { numel } from "../src/gpu/tensor.ts";
import { layerNormBackward } from "../src/ops/layer_norm.ts";

for (const shape of [[2, 4096, 320], [2, 1024, 640], [2, 77, 768]]) {
  const n = numel(shape), d = shape[2];
  gpuBench(`layerNormBackward ${JSON.stringify(shape)}`, { bytes: 3 * 4 * n }, (ctx) => {
    const x = ctx.tensor(shape), dout = ctx.tensor(shape), dx = ctx.tensor(shape);
    const stats = ctx.tensor([...shape.slice(0, -1), 2]), weight = ctx.tensor([d]);
    const dweight = ctx.tensor([d]), dbias = ctx.tensor([d]);
    return (rec) => void layerNormBackward(rec, { x, dout, stats, weight }, { dx, dweight, dbias, accumulate: false });
  });
}
