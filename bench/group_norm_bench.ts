// GB/s counts compulsory traffic: x read once, out written once (the kernels read x twice: stats, then apply).
import { gpuBench } from "./_bench.ts";
import { groupNorm } from "../src/ops/group_norm.ts";
import { numel } from "../src/gpu/tensor.ts";

for (const [shape, silu] of [[[2, 320, 64, 64], false], [[2, 320, 64, 64], true], [[2, 1280, 16, 16], true]] as const) {
  const n = numel(shape);
  gpuBench(`groupNorm ${JSON.stringify(shape)} groups=32${silu ? " +silu" : ""}`, { bytes: 2 * 4 * n }, (ctx) => {
    const x = ctx.tensor(shape), out = ctx.tensor(shape);
    const weight = ctx.tensor([shape[1]]), bias = ctx.tensor([shape[1]]);
    return (rec) => void groupNorm(rec, x, { weight, bias, groups: 32, eps: 1e-5, silu, out });
  });
}
