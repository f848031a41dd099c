// GB/s counts compulsory traffic: x read once, the output written once.
import { gpuBench } from "./_bench.ts";
import { numel } from "../src/gpu/tensor.ts";
import { mean, sum } from "../src/ops/reduce.ts";

const cases: [string, number[], number | null][] = [
  ["sum to a scalar", [5_000_000], null],
  ["mean over channels", [2, 320, 64, 64], 1],
  ["mean over the last axis", [2, 4096, 320], -1],
  ["sum over the batch", [4096, 5120], 0],
];
for (const [what, shape, axis] of cases) {
  const n = numel(shape);
  const outN = axis === null ? 1 : n / shape.at(axis)!;
  gpuBench(`${what} ${JSON.stringify(shape)} axis=${axis}`, { bytes: 4 * (n + outN) }, (ctx) => {
    const x = ctx.tensor(shape);
    const op = what.startsWith("sum") ? sum : mean;
    return (rec) => rec.releaseAfterSubmit(op(rec, x, { axis }));
  });
}
