// GB/s counts compulsory traffic: x read once, out written once.
import { gpuBench } from "./_bench.ts";
import { numel } from "../src/gpu/tensor.ts";
import { layerNorm } from "../src/ops/layer_norm.ts";

for (const shape of [[2, 4096, 320], [2, 1024, 640], [2, 77, 768]]) {
  const n = numel(shape), d = shape[2];
  gpuBench(`layerNorm ${JSON.stringify(shape)}`, { bytes: 2 * 4 * n }, (ctx) => {
    const x = ctx.tensor(shape), out = ctx.tensor(shape), weight = ctx.tensor([d]), bias = ctx.tensor([d]);
    return (rec) => void layerNorm(rec, x, { weight, bias, out });
  });
}
